"""CUDA path (GPU machine): same checks as on the CPU in float32 and bfloat16,
on a non-default stream. Skipped without a GPU or without the CUDA backend."""
import pytest
import torch

import flashrnn
from conftest import loop_reference

cuda_ok = torch.cuda.is_available() and flashrnn.HAVE_EXTENSION and flashrnn.build_info().get("cuda")
pytestmark = pytest.mark.skipif(not cuda_ok, reason="needs a GPU and FlashRNN built with CUDA")

CELLS = ["para_gru", "para_lstm", "diag_tanh"]
TOL = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.bfloat16: dict(rtol=2e-2, atol=2e-2),
       torch.float64: dict(rtol=1e-9, atol=1e-10)}


def make(cell, dtype, T=64, B=3, H=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    K, G, P, _ = flashrnn.CELLS[cell]
    u = torch.randn(T, B, G, H, generator=g, dtype=torch.float64)
    p = 0.8 * torch.randn(P, H, generator=g, dtype=torch.float64)
    s0 = 0.5 * torch.randn(B, K, H, generator=g, dtype=torch.float64)
    # the reference sees the same rounded inputs as the device
    return [t.to(dtype).to(torch.float64) for t in (u, p, s0)]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("mode", ["sequential", "newton", "newton_chunked", "auto"])
def test_cuda_forward_backward(cell, dtype, mode):
    u, p, s0 = make(cell, dtype)
    ref = loop_reference(cell, u, p, s0)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        ud, pd, sd = (t.to("cuda", dtype).requires_grad_(True) for t in (u, p, s0))
        states, rep = flashrnn.cell_solve(cell, ud, pd, sd, flashrnn.SolverOptions(mode=mode))
        w = torch.randn(states.shape, device="cuda", dtype=dtype)
        (states * w).sum().backward()
    torch.cuda.synchronize()
    torch.testing.assert_close(states.double().cpu(), ref, **TOL[dtype])
    ur, pr, sr = (t.clone().requires_grad_(True) for t in (u, p, s0))
    (loop_reference(cell, ur, pr, sr) * w.double().cpu()).sum().backward()
    scale = 10.0 if dtype == torch.bfloat16 else 1.0
    tol = {k: v * scale for k, v in TOL[dtype].items()}
    torch.testing.assert_close(ud.grad.double().cpu(), ur.grad, **tol)
    torch.testing.assert_close(sd.grad.double().cpu(), sr.grad, **tol)
    # grad_p sums over batch and time: compare relative to its size
    torch.testing.assert_close(pd.grad.double().cpu(), pr.grad, rtol=tol["rtol"] * 10,
                               atol=tol["atol"] * u.shape[0])


@pytest.mark.parametrize("cls", [flashrnn.ParaGRU, flashrnn.ParaLSTM])
def test_cuda_module_matches_cpu(cls):
    torch.manual_seed(0)
    m = cls(16, 32, num_layers=2, batch_first=True, num_heads=2)
    x = torch.randn(4, 50, 16)
    out_cpu, _ = m(x)
    m_gpu = cls(16, 32, num_layers=2, batch_first=True, num_heads=2).cuda()
    m_gpu.load_state_dict(m.state_dict())
    out_gpu, state = m_gpu(x.cuda())
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, rtol=1e-4, atol=1e-4)
    out_gpu.sum().backward()
    with torch.no_grad():
        y, s = m_gpu.step(x[:, 0].cuda())
    torch.testing.assert_close(y.cpu(), out_cpu[:, 0], rtol=1e-4, atol=1e-4)


def test_cuda_bf16_autocast_module():
    m = flashrnn.ParaGRU(16, 32, batch_first=True).cuda()
    x = torch.randn(2, 40, 16, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out, _ = m(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert m.weight_hh_l0.grad is not None and m.weight_hh_l0.grad.dtype == torch.float32


def test_cuda_cpu_mix_is_a_clear_error():
    u = torch.randn(5, 2, 3, 4, device="cuda")
    with pytest.raises(ValueError, match="'p' is on cpu"):
        flashrnn.cell_solve("para_gru", u, torch.randn(3, 4))


def test_python_cell_on_cuda():
    @flashrnn.cell(state_dim=1, input_dim=1, param_dim=1)
    def tanh_cell(s, u, p):
        return torch.tanh(p[0] * s + u[0])

    u = torch.randn(30, 2, 1, 5, device="cuda", dtype=torch.float64)
    p = torch.randn(1, 5, device="cuda", dtype=torch.float64)
    states, _ = flashrnn.generic_solve(tanh_cell, u, p)
    ref, _ = flashrnn.cell_solve("diag_tanh", u.cpu(), p.cpu(), None, flashrnn.SolverOptions(mode="sequential"))
    torch.testing.assert_close(states.cpu(), ref)
