"""torch.compile traces through the flashrnn::* custom ops (PyTorch >= 2.4)."""
import pytest
import torch

import flashrnn

_version = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2])


@pytest.mark.skipif(_version < (2, 4), reason="torch.library custom ops need PyTorch >= 2.4")
def test_compile_gru_model():
    assert flashrnn.HAS_LIBRARY_OPS
    torch.manual_seed(0)
    m = flashrnn.ParaGRU(8, 16, num_layers=2, batch_first=True)
    x = torch.randn(2, 10, 8, requires_grad=True)
    ref, _ = m(x)
    compiled = torch.compile(m)
    out, _ = compiled(x)
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    assert x.grad is not None


@pytest.mark.skipif(_version < (2, 4), reason="torch.library custom ops need PyTorch >= 2.4")
def test_compile_functional_fullgraph():
    u = torch.randn(12, 2, 3, 4, requires_grad=True)
    p = torch.randn(3, 4, requires_grad=True)

    def f(u, p):
        states, _ = flashrnn.cell_solve("para_gru", u, p)
        return states.tanh().sum()

    ref = f(u, p)
    out = torch.compile(f, fullgraph=True)(u, p)
    torch.testing.assert_close(out, ref)
    (gu,) = torch.autograd.grad(out, u)
    (gu_ref,) = torch.autograd.grad(f(u, p), u)
    torch.testing.assert_close(gu, gu_ref)


@pytest.mark.skipif(_version < (2, 4), reason="torch.library custom ops need PyTorch >= 2.4")
def test_opcheck():
    u = torch.randn(6, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    p = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.flashrnn.cell_forward.default,
                          # ..., chunk_length=0, sequential_segments=3, on_nonconvergence, ...
                          (u, p, None, "para_gru", "newton", 50, -1.0, -1.0, 1.0, 0, 3,
                           "fallback_sequential", True, "warn", 0))


def test_old_torch_uses_autograd_function():
    if _version < (2, 4):
        assert not flashrnn.HAS_LIBRARY_OPS
