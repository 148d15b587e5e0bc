// A persistent thread pool with a dynamic parallel-for. Work items are whole lane blocks whose
// results do not depend on which thread computes them, so scheduling never changes the bits.
#pragma once
#include <cstdint>
#include <functional>

namespace odefast {

void set_num_threads(int n);   // n <= 0: hardware concurrency (or ODEFAST_NUM_THREADS)
// The calling thread's own count, which its solves use instead of the process's (n <= 0:
// follow the process's again); returns the previous one. Lets threads that each run their own
// solves (Dask's worker threads) run them single-threaded without changing anyone else's.
int set_thread_num_threads(int n);
int get_num_threads();         // the calling thread's count if set, else the process's

// Calls body(i) for i in [0, n) on up to get_num_threads() threads (the caller included);
// rethrows the first exception a body threw.
void parallel_for(std::int64_t n, const std::function<void(std::int64_t)>& body);

}  // namespace odefast
