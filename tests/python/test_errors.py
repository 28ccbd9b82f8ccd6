"""Bad inputs raise ValueError / TypeError with text that names the problem."""
import pytest
import torch

import flashrnn
from flashrnn import _C


def test_module_input_errors():
    m = flashrnn.ParaGRU(4, 6)
    with pytest.raises(ValueError, match="input_size = 4"):
        m(torch.randn(5, 2, 3))
    with pytest.raises(ValueError, match="3-D"):
        m(torch.randn(5, 2, 4, 1))
    with pytest.raises(TypeError, match="float64"):
        m(torch.randn(5, 2, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        m([[1.0] * 4])
    with pytest.raises(ValueError, match=r"h0 must have shape"):
        m(torch.randn(5, 2, 4), torch.zeros(1, 3, 6))
    with pytest.raises(TypeError, match="tuple"):
        flashrnn.ParaLSTM(4, 6)(torch.randn(5, 2, 4), torch.zeros(1, 2, 6))


def test_half_on_cpu_is_a_clear_type_error():
    m = flashrnn.ParaGRU(4, 6).to(torch.bfloat16)
    with pytest.raises(TypeError, match="CUDA only"):
        m(torch.randn(5, 2, 4, dtype=torch.bfloat16))


def test_constructor_errors():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        flashrnn.ParaGRU(4, 6, num_heads=4)
    with pytest.raises(ValueError, match="hidden_size"):
        flashrnn.ParaGRU(4, 0)
    with pytest.raises(ValueError, match="mode"):
        flashrnn.ParaGRU(4, 6, mode="fast")
    with pytest.raises(ValueError, match="max_iters"):
        flashrnn.ParaGRU(4, 6, max_iters=0)


def test_functional_errors():
    u = torch.randn(5, 2, 3, 4)
    with pytest.raises(ValueError, match=r"'p' must have shape \(3, 4\)"):
        flashrnn.cell_solve("para_gru", u, torch.randn(3, 5))
    with pytest.raises(ValueError, match="'s0'"):
        flashrnn.cell_solve("para_gru", u, torch.randn(3, 4), torch.zeros(2, 2, 4))
    with pytest.raises(TypeError, match="share one dtype"):
        flashrnn.cell_solve("para_gru", u, torch.randn(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown cell"):
        flashrnn.cell_solve("gru2", u, torch.randn(3, 4))
    with pytest.raises(ValueError, match="non-finite|finite"):
        bad = u.clone()
        bad[1, 0, 0, 0] = float("nan")
        flashrnn.cell_solve("para_gru", bad, torch.randn(3, 4))


def test_native_errors_name_the_argument():
    u = torch.randn(5, 2, 3, 4)
    p = torch.randn(1, 1, 3, 4)
    out = torch.empty(5, 2, 1, 4)
    dl = torch.utils.dlpack.to_dlpack
    with pytest.raises(ValueError, match="argument 'states'"):
        _C.forward("para_gru", dl(u), dl(p), None, dl(torch.empty(5, 2, 1, 3)), None)
    with pytest.raises(ValueError, match="4-D"):
        _C.forward("para_gru", dl(u[0]), dl(p), None, dl(out), None)
    with pytest.raises(TypeError, match="floating-point"):
        _C.forward("para_gru", dl(u.int()), dl(p), None, dl(out), None)
    with pytest.raises(TypeError, match="DLPack"):
        _C.forward("para_gru", [1, 2], dl(p), None, dl(out), None)
    with pytest.raises(ValueError, match="dtype float32"):
        _C.forward("para_gru", dl(u), dl(p.double()), None, dl(out), None)
    with pytest.raises(ValueError, match="bfloat16"):
        _C.forward("para_gru", dl(u.bfloat16()), dl(p.bfloat16()), None, dl(out.bfloat16()), None)
    with pytest.raises(ValueError, match="mode"):
        _C.forward("para_gru", dl(u), dl(p), None, dl(out), None, mode="fastest")
    with pytest.raises(ValueError, match="at least one output"):
        _C.forward("para_gru", dl(u), dl(p), None, None, None)


def _fake_cuda_capsule(shape, keep):
    """A 'dltensor' capsule that claims to live on cuda:0 (its memory is never
    touched: the call must fail before)."""
    import ctypes

    class DLDevice(ctypes.Structure):
        _fields_ = [("device_type", ctypes.c_int), ("device_id", ctypes.c_int32)]

    class DLDataType(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]

    class DLTensor(ctypes.Structure):
        _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                    ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                    ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]

    class DLManagedTensor(ctypes.Structure):
        _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p),
                    ("deleter", ctypes.c_void_p)]

    buf = torch.zeros(int(torch.tensor(shape).prod()))
    shp = (ctypes.c_int64 * 4)(*shape)
    mt = DLManagedTensor(DLTensor(buf.data_ptr(), DLDevice(2, 0), 4, DLDataType(2, 32, 1), shp, None, 0),
                         None, None)
    keep += [buf, shp, mt]
    new = ctypes.pythonapi.PyCapsule_New
    new.restype, new.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    return new(ctypes.addressof(mt), b"dltensor", None)


def test_cuda_tensor_without_cuda_build_is_a_clear_error():
    if flashrnn.build_info()["cuda"]:
        pytest.skip("built with CUDA")
    keep = []
    u = _fake_cuda_capsule((5, 2, 3, 4), keep)
    p = _fake_cuda_capsule((1, 1, 3, 4), keep)
    out = _fake_cuda_capsule((5, 2, 1, 4), keep)
    with pytest.raises(ValueError, match="built without CUDA"):
        _C.forward("para_gru", u, p, None, out, None)
    # mixing devices is caught first, naming the argument
    with pytest.raises(ValueError, match=r"argument 'p': expected device cuda:0"):
        _C.forward("para_gru", _fake_cuda_capsule((5, 2, 3, 4), keep),
                   torch.utils.dlpack.to_dlpack(torch.zeros(1, 1, 3, 4)), None,
                   _fake_cuda_capsule((5, 2, 1, 4), keep), None)
