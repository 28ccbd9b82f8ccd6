// Test main of the CUDA suite: without a usable GPU it runs only the test
// cases tagged [host] (the tuning rules: host code) and, if they pass, says
// why the rest is skipped and exits 77 (ctest: skipped) instead of failing.
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
    char host_only[] = "[host]";
    char* host_argv[] = {argv[0], host_only, nullptr};
    const int host_failed = Catch::Session().run(2, host_argv);
    if (host_failed != 0) return host_failed;
    std::printf("SKIPPED: the CUDA tests need a GPU; cudaGetDeviceCount gave %d device(s) (%s); "
                "the [host] tests above ran and passed\n",
                n, e == cudaSuccess ? "no device" : cudaGetErrorString(e));
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
