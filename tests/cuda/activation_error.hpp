// Errors of the CUDA kernels' 16-bit-storage activations (core/.../math.hpp),
// measured on the device over every float (activation_error.cu).
#pragma once

namespace flashrnn_test {

struct ActivationError {
  double max_rel = 0;            // max |f - exact| / |exact| where |exact| >= 2^-126
  double worst_x = 0;            // an x where it occurs
  unsigned long long wrong = 0;  // NaN not kept, result out of range, or tiny results not tiny
};

/// Runs the 16-bit-storage sigmoid on all 2^32 float bit patterns.
ActivationError measure_sigmoid_16bit();
/// Runs the 16-bit-storage tanh on all 2^32 float bit patterns.
ActivationError measure_tanh_16bit();

}  // namespace flashrnn_test
