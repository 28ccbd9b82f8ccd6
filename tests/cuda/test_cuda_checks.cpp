// Argument checks of the CUDA entry points that the main suite does not cover.
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "catch.hpp"
#include "cuda_test_support.hpp"
#include "flashrnn/cuda/api.hpp"
#include "flashrnn/flashrnn.hpp"

using namespace flashrnn;
using flashrnn_test::DeviceBuffer;

TEST_CASE("cuda step: in place is allowed, the same memory through other strides is not",
          "[cuda][step][errors]") {
  using Cell = cells::ParaLSTM;  // K = 2: batch-major and channel-major strides differ
  const index_t B = 3, H = 8;
  DeviceBuffer<float> du(B * 3 * H), dp(5 * H), ds(B * 2 * H);
  du.upload(std::vector<float>(du.n, 0.25f));
  dp.upload(std::vector<float>(dp.n, 0.5f));
  ds.upload(std::vector<float>(ds.n, 0.1f));
  const auto u = batch_first<const float>(du.ptr, B, 1, 3, H);
  const auto p = param_view<const float>(dp.ptr, 5, H);
  const auto s_prev = state_view<const float>(ds.ptr, B, 2, H);
  CHECK_NOTHROW(cuda::step<Cell, float>(u, p, s_prev, state_view(ds.ptr, B, 2, H)));
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  // s_next over s_prev's memory with channels and batch swapped: lanes would
  // read elements other lanes already overwrote.
  View<float> swapped = state_view(ds.ptr, B, 2, H);
  swapped.stride_b = H;
  swapped.stride_c = B * H;
  try {
    cuda::step<Cell, float>(u, p, s_prev, swapped);
    FAIL("expected InvalidArgument");
  } catch (const InvalidArgument& e) {
    const std::string msg = e.what();
    CHECK(msg.find("s_next") != std::string::npos);
    CHECK(msg.find("s_prev") != std::string::npos);
    CHECK(msg.find("flashrnn::cuda::step") != std::string::npos);
  }
}
