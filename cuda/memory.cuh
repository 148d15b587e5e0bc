// GPU memory for one call: arguments staged from host memory (or used in place when they are
// device memory), scratch, and the copies back. Every CUDA call is checked (check.cuh).
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>

#include "api.hpp"
#include "check.cuh"

namespace odefast::gpu {

// An owned device allocation (freed on scope exit; the normal path frees through release(),
// which is checked; an exception in flight frees without a check, as destructors must not throw).
class DeviceMemory {
 public:
  DeviceMemory() = default;
  explicit DeviceMemory(std::size_t bytes) { allocate(bytes); }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  DeviceMemory(DeviceMemory&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  ~DeviceMemory() {
    if (ptr_) cudaFree(ptr_);
  }
  void allocate(std::size_t bytes) {
    release();
    if (bytes) ODEFAST_CUDA_CHECK(cudaMalloc(&ptr_, bytes));
    bytes_ = bytes;
  }
  void release() {
    if (ptr_) {
      void* p = ptr_;
      ptr_ = nullptr;
      ODEFAST_CUDA_CHECK(cudaFree(p));
    }
    bytes_ = 0;
  }
  void zero() {
    if (ptr_) ODEFAST_CUDA_CHECK(cudaMemset(ptr_, 0, bytes_));
  }
  template <class T = void> T* get() const { return static_cast<T*>(ptr_); }
  std::size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// A call's array on the GPU: the caller's device memory, or a staged copy of host memory.
class Staged {
 public:
  // input: host memory is copied to the GPU now
  static Staged input(const Buffer& b) {
    Staged s(b);
    if (!b.device && b.bytes) ODEFAST_CUDA_CHECK(cudaMemcpy(s.mem_.get(), b.ptr, b.bytes, cudaMemcpyHostToDevice));
    return s;
  }
  // output: host memory gets the GPU's result in finish()
  static Staged output(const Buffer& b) { return Staged(b); }
  Staged(Staged&&) = default;
  template <class T> T* get() const { return static_cast<T*>(buf_.device ? buf_.ptr : mem_.get()); }
  void zero() {
    if (buf_.bytes) ODEFAST_CUDA_CHECK(cudaMemset(get<void>(), 0, buf_.bytes));
  }
  void finish() {
    if (!buf_.device && buf_.bytes) ODEFAST_CUDA_CHECK(cudaMemcpy(buf_.ptr, mem_.get(), buf_.bytes, cudaMemcpyDeviceToHost));
    mem_.release();
  }

 private:
  explicit Staged(const Buffer& b) : buf_(b) {
    if (!b.device) mem_.allocate(b.bytes);
  }
  Buffer buf_;
  DeviceMemory mem_;
};

// Checks a kernel launch (configuration errors surface at once, faults at the next sync).
#define ODEFAST_CUDA_CHECK_LAUNCH() ODEFAST_CUDA_CHECK(cudaGetLastError())

inline unsigned blocks_for(std::int64_t n, int threads) { return unsigned((n + threads - 1) / threads); }

}  // namespace odefast::gpu
