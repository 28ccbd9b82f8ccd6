"""cell_solve / cell_step against the plain loop; gradcheck in float64."""
import pytest
import torch

import flashrnn
from conftest import loop_reference

CELLS = ["para_gru", "para_lstm", "diag_tanh"]
MODES = ["sequential", "newton", "newton_chunked", "auto"]


def make(cell, T=24, B=3, H=5, dtype=torch.float64, seed=0, s0=True):
    g = torch.Generator().manual_seed(seed)
    K, G, P, _ = flashrnn.CELLS[cell]
    u = torch.randn(T, B, G, H, generator=g, dtype=dtype)
    p = 0.8 * torch.randn(P, H, generator=g, dtype=dtype)
    s = 0.5 * torch.randn(B, K, H, generator=g, dtype=dtype) if s0 else None
    return u, p, s


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("mode", MODES)
def test_forward_matches_loop(cell, mode):
    u, p, s0 = make(cell)
    states, rep = flashrnn.cell_solve(cell, u, p, s0, flashrnn.SolverOptions(mode=mode))
    torch.testing.assert_close(states, loop_reference(cell, u, p, s0), rtol=1e-9, atol=1e-10)
    r = flashrnn.SolveReport.from_tensor(rep)
    assert r.converged and r.lanes == 3 * 5
    if mode != "auto":
        assert r.mode == mode


@pytest.mark.parametrize("cell", CELLS)
def test_float32_matches_float64_loop(cell):
    u, p, s0 = make(cell, T=40)
    states, _ = flashrnn.cell_solve(cell, u.float(), p.float(), s0.float(),
                                    flashrnn.SolverOptions(mode="newton"))
    torch.testing.assert_close(states.double(), loop_reference(cell, u, p, s0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_gradients_match_loop(cell):
    u, p, s0 = make(cell)
    w = torch.randn(u.shape[0], u.shape[1], flashrnn.CELLS[cell][0], u.shape[3], dtype=u.dtype)
    grads = []
    for fn in (lambda a, b, c: flashrnn.cell_solve(cell, a, b, c)[0], lambda a, b, c: loop_reference(cell, a, b, c)):
        a, b, c = (t.clone().requires_grad_(True) for t in (u, p, s0))
        loss = (fn(a, b, c) * w).sum() + fn(a, b, c)[-1].pow(2).sum()
        grads.append(torch.autograd.grad(loss, (a, b, c)))
    for g1, g2 in zip(*grads):
        torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck(cell):
    u, p, s0 = make(cell, T=7, B=2, H=3)
    args = tuple(t.clone().requires_grad_(True) for t in (u, p, s0))
    assert torch.autograd.gradcheck(lambda a, b, c: flashrnn.cell_solve(cell, a, b, c)[0], args,
                                    eps=1e-6, atol=1e-7)


def test_strided_inputs():
    # batch-first memory seen time-first, and a non-contiguous parameter view
    u, p, s0 = make("para_gru", T=10, B=4, H=6)
    u_bf = u.transpose(0, 1).contiguous().transpose(0, 1)
    p_t = p.t().contiguous().t()
    states, _ = flashrnn.cell_solve("para_gru", u_bf, p_t, s0)
    torch.testing.assert_close(states, loop_reference("para_gru", u, p, s0))


@pytest.mark.parametrize("cell", CELLS)
def test_step_matches_loop(cell):
    u, p, s0 = make(cell, T=5)
    s = s0
    for t in range(5):
        s = flashrnn.cell_step(cell, u[t], p, s)
    torch.testing.assert_close(s, loop_reference(cell, u, p, s0)[-1])


def test_affine_scan_native_vs_torch():
    g = torch.Generator().manual_seed(1)
    for K, diag in ((1, True), (3, True), (2, False), (4, False), (6, False)):
        shape = (33, 7, K) if diag else (33, 7, K, K)
        A = 0.5 * torch.randn(*shape, generator=g, dtype=torch.float64)
        c = torch.randn(33, 7, K, generator=g, dtype=torch.float64)
        s0 = torch.randn(7, K, generator=g, dtype=torch.float64)
        for reverse in (False, True):
            ref = torch.empty_like(c)
            prev = s0
            order = range(32, -1, -1) if reverse else range(33)
            for t in order:
                prev = (A[t] * prev if diag else (A[t] @ prev[..., None])[..., 0]) + c[t]
                ref[t] = prev
            torch.testing.assert_close(flashrnn.affine_scan(A, c, s0, reverse=reverse), ref)
            torch.testing.assert_close(flashrnn.affine_scan_torch(A, c, s0, reverse=reverse), ref)


def _scan_loop(A, c, s0, reverse):
    """out[t] = A[t] out[t-1] + c[t] one step at a time, any of the three structures."""
    T, N, K = c.shape
    ref, prev = torch.empty_like(c), s0
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        if A.dim() == 3:
            nxt = A[t] * prev
        elif A.dim() == 4:
            nxt = (A[t] @ prev[..., None])[..., 0]
        else:
            nb, b = A.shape[2], A.shape[3]
            nxt = (A[t] @ prev.reshape(N, nb, b, 1)).reshape(N, K)
        prev = nxt + c[t]
        ref[t] = prev
    return ref


@pytest.mark.parametrize("structure", ["diagonal", "block_diagonal", "dense"])
def test_affine_scan_structures_native(structure):
    """All three structures of A reach the C++ scan (called directly here, so a
    silent torch fallback cannot pass) and equal the sequential loop in float64;
    N = 1 exercises the time-parallel path, N = 9 the lane-parallel one."""
    from flashrnn import _C
    from flashrnn._ext import dl
    g = torch.Generator().manual_seed(2)
    cases = {"diagonal": [(3, None)], "block_diagonal": [(4, 2), (6, 3), (8, 4), (10, 5)],
             "dense": [(2, None), (4, None), (7, None)]}[structure]
    for T, N in ((300, 1), (37, 9)):
        for K, b in cases:
            shape = {"diagonal": (T, N, K), "dense": (T, N, K, K)}.get(structure, (T, N, K // (b or 1), b, b))
            bs = {"diagonal": 1, "dense": K}.get(structure, b)
            A = 0.8 / bs ** 0.5 * torch.randn(*shape, generator=g, dtype=torch.float64)
            c = torch.randn(T, N, K, generator=g, dtype=torch.float64)
            s0 = torch.randn(N, K, generator=g, dtype=torch.float64)
            for reverse in (False, True):
                ref = _scan_loop(A, c, s0, reverse)
                out = torch.empty_like(c)
                _C.affine_scan(dl(A), dl(c), dl(s0), dl(out), reverse, 2)
                torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
                torch.testing.assert_close(flashrnn.affine_scan(A, c, s0, reverse=reverse), ref,
                                           rtol=1e-10, atol=1e-10)
                torch.testing.assert_close(flashrnn.affine_scan_torch(A, c, s0, reverse=reverse), ref,
                                           rtol=1e-10, atol=1e-10)
                torch.testing.assert_close(flashrnn.affine_scan(A.float(), c.float(), s0.float(),
                                                                reverse=reverse), ref.float(),
                                           rtol=1e-4, atol=1e-4)


def test_affine_scan_rejects_bad_block_shapes():
    from flashrnn import _C
    from flashrnn._ext import dl
    c = torch.zeros(5, 2, 6, dtype=torch.float64)
    for shape in ((5, 2, 2, 2, 2), (5, 2, 3, 2, 3), (5, 2, 6, 6, 1)):
        A = torch.zeros(*shape, dtype=torch.float64)
        with pytest.raises(ValueError, match="block-diagonal"):
            flashrnn.affine_scan(A, c)
        with pytest.raises(ValueError, match="block-diagonal"):
            _C.affine_scan(dl(A), dl(c), None, dl(torch.empty_like(c)), False, 0)


def test_numpy_dlpack_direct():
    np = pytest.importorskip("numpy")
    from flashrnn import _C
    u = np.random.default_rng(0).standard_normal((6, 2, 3, 4))
    p = np.full((1, 1, 3, 4), 0.3)
    out = np.zeros((6, 2, 1, 4))
    if not hasattr(u, "__dlpack__"):
        pytest.skip("numpy without __dlpack__")
    rep = _C.forward("para_gru", u, p, None, out, None, mode="newton")
    ref = loop_reference("para_gru", torch.from_numpy(u), torch.from_numpy(p[0, 0]))
    torch.testing.assert_close(torch.from_numpy(out), ref)
    assert rep["converged"]


def test_expanded_upstream_gradient():
    # states.sum() hands the backward a stride-0 (expanded) gradient
    u, p, s0 = make("para_lstm", T=9)
    a = u.clone().requires_grad_(True)
    flashrnn.cell_solve("para_lstm", a, p, s0)[0].sum().backward()
    b = u.clone().requires_grad_(True)
    loop_reference("para_lstm", b, p, s0).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_sequential_segments_validated_and_ignored_on_cpu():
    # SolverOptions rejects values outside 0..16 (the CUDA kernel's limit), naming the field.
    for bad in (-1, 17, 2.0, True, None):
        with pytest.raises(ValueError, match=rf"sequential_segments.*got {bad!r}"):
            flashrnn.SolverOptions(sequential_segments=bad)
    assert flashrnn.SolverOptions().sequential_segments == 0
    assert flashrnn.SolverOptions(sequential_segments=16).native_kwargs()["sequential_segments"] == 16
    from flashrnn import _C
    assert _C.max_sequential_segments == flashrnn._ext.MAX_SEQUENTIAL_SEGMENTS == 16
    # The native check is there too (every backend), for callers of _C directly.
    u, p, _ = make("para_gru", T=6, B=2, H=4)
    dl = torch.utils.dlpack.to_dlpack
    for bad in (-1, 17):
        with pytest.raises(ValueError, match=rf"argument 'options.sequential_segments'.*got {bad}"):
            _C.forward("para_gru", dl(u), dl(p[None, None]), None, dl(u.new_empty(6, 2, 1, 4)),
                       None, sequential_segments=bad)
    # The CPU ignores it: bitwise the same states as the default, in every mode.
    for cell in CELLS:
        u, p, s0 = make(cell)
        for mode in MODES:
            ref, _ = flashrnn.cell_solve(cell, u, p, s0, flashrnn.SolverOptions(mode=mode))
            for segs in (1, 3, 8):
                states, _ = flashrnn.cell_solve(
                    cell, u, p, s0, flashrnn.SolverOptions(mode=mode, sequential_segments=segs))
                assert torch.equal(states, ref), (cell, mode, segs)
