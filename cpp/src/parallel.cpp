#include "odefast/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace odefast {
namespace {

int default_threads() {
  if (const char* env = std::getenv("ODEFAST_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

// Scheduling: the caller works through the tasks itself and workers join in as they wake up.
// A region ends when its tasks are done: the caller closes it and waits only for the workers
// that joined (are running tasks), never for one that has not woken up yet (on a busy or
// virtualised machine that can take milliseconds, longer than a whole small solve).
// Workers poll briefly for the next region before they sleep, so back-to-back solves (a
// training loop, a benchmark) find them awake; with more threads than cores nobody polls.
// Sleeping and waking use the usual handshake: a seq_cst flag, then a re-check under the mutex.
class Pool {
 public:
  ~Pool() { resize(0); }

  void resize(int n_workers) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_.store(true);
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
    stop_.store(false);
    // New workers must not mistake an already finished round for a new one.
    const std::uint64_t current = generation_.load();
    spin_ = n_workers < int(std::max(1u, std::thread::hardware_concurrency()));
    for (int i = 0; i < n_workers; ++i) workers_.emplace_back([this, current] { loop(current); });
  }

  void run(std::int64_t n, const std::function<void(std::int64_t)>& body, int n_threads) {
    std::lock_guard<std::mutex> serial(run_mu_);  // one parallel region at a time
    if (int(workers_.size()) != n_threads - 1) resize(n_threads - 1);
    body_ = &body;
    n_ = n;
    next_.store(0);
    error_ = nullptr;
    open_.store(true);
    generation_.fetch_add(1);  // publishes the fields above
    if (sleepers_.load() > 0) {
      std::lock_guard<std::mutex> lock(mu_);
      cv_.notify_all();
    }
    work();
    open_.store(false);  // all tasks are taken: late workers stay out
    if (!spin_until([this] { return joined_.load() == 0; }, spin_ ? kCallerSpin : kNoSpin)) {
      std::unique_lock<std::mutex> lock(mu_);
      caller_waiting_.store(true);
      done_cv_.wait(lock, [this] { return joined_.load() == 0; });
      caller_waiting_.store(false);
    }
    body_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  using Clock = std::chrono::steady_clock;
  // the caller waits at most about one task for the workers; workers poll for the next region
  static constexpr std::chrono::microseconds kCallerSpin{2000}, kWorkerSpin{300}, kNoSpin{0};

  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  // Polls done() for up to `limit`; true once it holds. (Short: a thread that spins long on
  // a busy machine only loses its priority to the other processes.)
  template <class Done> static bool spin_until(Done done, std::chrono::microseconds limit) {
    const auto deadline = Clock::now() + limit;
    do {
      for (int i = 0; i < 64; ++i) {
        if (done()) return true;
        pause();
      }
    } while (Clock::now() < deadline);
    return done();
  }

  void work() {
    for (std::int64_t i; (i = next_.fetch_add(1)) < n_;) {
      try {
        (*body_)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu_);
        if (!error_) error_ = std::current_exception();
        next_.store(n_);
      }
    }
  }
  void loop(std::uint64_t seen) {
    while (true) {
      auto fresh = [&] { return stop_.load() || generation_.load() != seen; };
      if (!spin_until(fresh, spin_ ? kWorkerSpin : kNoSpin)) {
        std::unique_lock<std::mutex> lock(mu_);
        sleepers_.fetch_add(1);
        cv_.wait(lock, fresh);
        sleepers_.fetch_sub(1);
      }
      if (stop_.load()) return;
      seen = generation_.load();
      joined_.fetch_add(1);
      if (open_.load() && generation_.load() == seen) work();  // else: that region is over
      if (joined_.fetch_sub(1) == 1 && caller_waiting_.load()) {
        std::lock_guard<std::mutex> lock(mu_);
        done_cv_.notify_one();
      }
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mu_, run_mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(std::int64_t)>* body_ = nullptr;
  std::int64_t n_ = 0;
  std::atomic<std::int64_t> next_{0};
  std::exception_ptr error_;
  std::atomic<int> joined_{0}, sleepers_{0};
  std::atomic<bool> stop_{false}, open_{false}, caller_waiting_{false};
  std::atomic<std::uint64_t> generation_{0};
  bool spin_ = false;  // set by resize, before the workers start
};

Pool& pool() {
  static Pool p;
  return p;
}
std::atomic<int> g_threads{0};
thread_local int t_threads = 0;  // this thread's own count; 0: the process's (g_threads)

}  // namespace

void set_num_threads(int n) { g_threads.store(n > 0 ? n : default_threads()); }

int set_thread_num_threads(int n) {
  const int previous = t_threads;
  t_threads = n > 0 ? n : 0;
  return previous;
}

int get_num_threads() {
  if (t_threads > 0) return t_threads;
  int n = g_threads.load();
  if (n <= 0) {
    n = default_threads();
    g_threads.store(n);
  }
  return n;
}

void parallel_for(std::int64_t n, const std::function<void(std::int64_t)>& body) {
  const int threads = get_num_threads();
  if (threads <= 1 || n <= 1) {
    for (std::int64_t i = 0; i < n; ++i) body(i);
    return;
  }
  pool().run(n, body, threads);
}

}  // namespace odefast
