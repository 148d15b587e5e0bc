// Every CUDA runtime call goes through ODEFAST_CUDA_CHECK: a failure becomes a C++ exception
// (a Python RuntimeError) naming the call, file, line and CUDA's message.
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#define ODEFAST_CUDA_CHECK(call)                                                         \
  do {                                                                                   \
    const cudaError_t odefast_err_ = (call);                                             \
    if (odefast_err_ != cudaSuccess)                                                     \
      throw std::runtime_error(std::string(#call) + " failed at " + __FILE__ + ":" +    \
                               std::to_string(__LINE__) + ": " +                         \
                               cudaGetErrorString(odefast_err_));                        \
  } while (0)
