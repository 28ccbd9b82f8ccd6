// Non-template parts of the CUDA backend's API.
#include <cstring>

#include "flashrnn/cuda/api.hpp"

namespace flashrnn {
namespace cuda {

SolveReport to_solve_report(const DeviceReport& r, Mode mode_used, index_t lanes) {
  SolveReport rep;
  rep.mode_used = mode_used;
  rep.iterations = r.iterations;
  double residual = 0.0;
  static_assert(sizeof(residual) == sizeof(r.residual_bits), "double is 64 bits");
  std::memcpy(&residual, &r.residual_bits, sizeof(residual));
  rep.final_residual = residual;
  rep.lanes = lanes;
  rep.nonfinite_detected = r.nonfinite != 0;
  // A lane that fell back to stepping is exact; not_converged counts it too.
  rep.lanes_fell_back = static_cast<index_t>(r.lanes_fell_back) < lanes
                            ? static_cast<index_t>(r.lanes_fell_back)
                            : lanes;
  rep.converged = r.not_converged == 0 && r.nonfinite == 0;
  return rep;
}

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

}  // namespace cuda
}  // namespace flashrnn
