// __half on HIP (see cuda_runtime.h in this folder).
#pragma once
#include <hip/hip_fp16.h>
