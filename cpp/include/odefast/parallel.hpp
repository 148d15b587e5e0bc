// A persistent thread pool with a dynamic parallel-for. Work items are whole lane blocks whose
// results do not depend on which thread computes them, so scheduling never changes the bits.
#pragma once
#include <cstdint>
#include <functional>

namespace odefast {

void set_num_threads(int n);   // n <= 0: hardware concurrency (or ODEFAST_NUM_THREADS)
int get_num_threads();

// Calls body(i) for i in [0, n) on up to get_num_threads() threads (the caller included);
// rethrows the first exception a body threw.
void parallel_for(std::int64_t n, const std::function<void(std::int64_t)>& body);

}  // namespace odefast
