// Test main of the CUDA suite: without a usable GPU it says why and exits 77
// (ctest: skipped) instead of failing.
#include <cstdio>

#include <cuda_runtime.h>

#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_session.hpp>
#else
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#endif

int main(int argc, char** argv) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    std::printf("SKIPPED: the CUDA tests need a GPU; cudaGetDeviceCount gave %d device(s) (%s)\n", n,
                e == cudaSuccess ? "no device" : cudaGetErrorString(e));
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
