// The subset of DLPack (v0.6+ legacy ABI: DLManagedTensor in a "dltensor"
// capsule) the extension uses. Only compiled when no dlpack.h was found
// (no libdlpack-dev, no torch in the build environment); the layout below is
// DLPack's stable ABI, see https://dmlc.github.io/dlpack/latest/c_api.html.
#pragma once
#include <cstdint>

#define DLPACK_VERSION 60
extern "C" {
typedef enum { kDLCPU = 1, kDLCUDA = 2 } DLDeviceType;
typedef struct {
  DLDeviceType device_type;
  int32_t device_id;
} DLDevice;
typedef enum { kDLInt = 0U, kDLUInt = 1U, kDLFloat = 2U, kDLOpaqueHandle = 3U, kDLBfloat = 4U } DLDataTypeCode;
typedef struct {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
} DLDataType;
typedef struct {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;
  uint64_t byte_offset;
} DLTensor;
typedef struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(struct DLManagedTensor* self);
} DLManagedTensor;
}
