// Error of the CUDA kernels' 16-bit-storage sigmoid (core/.../math.hpp),
// measured on the device over every float (activation_error.cu).
#pragma once

namespace flashrnn_test {

struct SigmoidError {
  double max_rel = 0;            // max |s - exact| / exact where exact >= 2^-126
  double worst_x = 0;            // an x where it occurs
  unsigned long long wrong = 0;  // NaN not kept, result outside [0, 1], or tiny results not tiny
};

/// Runs the 16-bit-storage sigmoid on all 2^32 float bit patterns.
SigmoidError measure_sigmoid_16bit();

}  // namespace flashrnn_test
