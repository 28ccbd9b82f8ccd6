// Experiment behind tuning::backward_sequential (perf/README.md, "Adjoint kernel
// choice"): the exact reverse sweep (sequential_backward.cuh, with the tuned
// segment count) against the parallel adjoint (chunked reverse scan), forced
// through detail::backward_with, B = 8. Built by CMake with the perf targets
// (flashrnn_exp_adjoint_choice), linked to the library. Arguments: none
// (ParaGRU and ParaLSTM in fp32 and bf16), "others" (the cells and types
// the first grid leaves out: ParaGRU/ParaLSTM fp64, DiagTanh fp32/bf16,
// HeadTanh4 fp32/bf16/fp64) or "profile" (the sweep alone, a few launches
// each of ParaGRU and ParaLSTM bf16 at 65536 lanes, T = 2048, for
// ncu --kernel-name regex:sequential_backward).
#include <cstdio>
#include <cstring>

#include "flashrnn/cells/diag_tanh.hpp"
#include "flashrnn/cells/head_tanh.hpp"
#include "flashrnn/cells/para_gru.hpp"
#include "flashrnn/cells/para_lstm.hpp"
#include "flashrnn/cuda/api.hpp"
#include "flashrnn/cuda/tuning.hpp"

#include "common.cuh"

namespace xb {
using namespace flashrnn;

template <class Cell, class S>
void shape(const char* dtype, int H, long T, bool sweep_only = false) {
  constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
  const int B = 8;
  const size_t nu = size_t(B) * T * G * H, ns = size_t(B) * T * K * H;
  S *u, *p, *st, *gs, *gu, *gp;
  CK(cudaMalloc(&u, nu * sizeof(S)));
  CK(cudaMalloc(&gu, nu * sizeof(S)));
  CK(cudaMalloc(&st, ns * sizeof(S)));
  CK(cudaMalloc(&gs, ns * sizeof(S)));
  CK(cudaMalloc(&p, size_t(P) * H * sizeof(S)));
  CK(cudaMalloc(&gp, size_t(P) * H * sizeof(S)));
  fill_kernel<<<1024, 256>>>(u, nu, 1.5f, 1);
  fill_kernel<<<1024, 256>>>(gs, ns, 1.0f, 2);
  fill_kernel<<<64, 256>>>(p, size_t(P) * H, 0.9f, 3);
  SolverOptions o;
  o.mode = Mode::sequential;
  o.check_finite = false;
  cuda::forward_async<Cell, S>(batch_first<const S>(u, B, T, G, H), param_view<const S>(p, P, H), {},
                               batch_first(st, B, T, K, H), {}, o, nullptr, nullptr);
  CK(cudaDeviceSynchronize());
  auto run = [&](cuda::detail::AdjointKernel k) {
    return median_ms([&] {
      cuda::detail::backward_with<Cell, S>(
          batch_first<const S>(u, B, T, G, H), param_view<const S>(p, P, H), {},
          batch_first<const S>(st, B, T, K, H), batch_first<const S>(gs, B, T, K, H), {},
          batch_first(gu, B, T, G, H), param_view(gp, P, H), {}, {k, 0, -1}, nullptr);
    });
  };
  const float seq = run(cuda::detail::AdjointKernel::sequential);
  const float par = sweep_only ? 0.0f : run(cuda::detail::AdjointKernel::parallel);
  const bool tuned_seq = cuda::tuning::backward_sequential(index_t(B) * H, T, sizeof(S), K);
  // Unavoidable I/O: read u, states, grad_states; write grad_u.
  const double gb = double(2 * nu + 2 * ns) * sizeof(S) / 1e9;
  std::printf("%-9s %s lanes=%-6d T=%-6ld sequential(C=%d) %8.3f ms (%4.0f GB/s)  parallel %8.3f ms (%4.0f GB/s)  "
              "seq/par %5.2f  tuned=%s\n",
              Cell::name, dtype, B * H, T, cuda::tuning::sequential_segments(index_t(B) * H, T), seq,
              gb / (seq * 1e-3), par, gb / (par * 1e-3), seq / par, tuned_seq ? "sequential" : "parallel");
  for (S* x : {u, p, st, gs, gu, gp}) cudaFree(x);
  CK(cudaDeviceSynchronize());
}

void run(bool others) {
  std::printf("device-to-device copy: %.0f GB/s\n", copy_gbs());
  for (int H : {32, 128, 512, 1024, 2048, 4096, 8192})
    for (long T : {256L, 2048L, 8192L}) {
      if (others) {
        shape<cells::ParaGRU, double>("fp64", H, T);
        shape<cells::ParaLSTM, double>("fp64", H, T);
        shape<cells::DiagTanh, float>("fp32", H, T);
        shape<cells::DiagTanh, __nv_bfloat16>("bf16", H, T);
        shape<cells::HeadTanh4, float>("fp32", H, T);
        shape<cells::HeadTanh4, __nv_bfloat16>("bf16", H, T);
        shape<cells::HeadTanh4, double>("fp64", H, T);
        continue;
      }
      shape<cells::ParaGRU, float>("fp32", H, T);
      shape<cells::ParaGRU, __nv_bfloat16>("bf16", H, T);
      shape<cells::ParaLSTM, float>("fp32", H, T);
      shape<cells::ParaLSTM, __nv_bfloat16>("bf16", H, T);
    }
}

/// The sweep of two bf16 shapes the rule gives it, timed as in `shape`.
void profile() {
  shape<cells::ParaGRU, __nv_bfloat16>("bf16", 8192, 2048, true);
  shape<cells::ParaLSTM, __nv_bfloat16>("bf16", 8192, 2048, true);
}
}  // namespace xb

int main(int argc, char** argv) {
  if (argc > 1 && !std::strcmp(argv[1], "profile")) return xb::profile(), 0;
  xb::run(argc > 1 && !std::strcmp(argv[1], "others"));
}
