"""report_nonconvergence: a solve that did not converge warns
(flashrnn.NonConvergenceWarning), raises (ConvergenceError) or stays silent,
after the policy (on_nonconvergence) has been applied -- for the built-in cells
(functional API and modules) and for cells written in Python."""
import math
import warnings

import pytest
import torch

import flashrnn
from conftest import loop_reference, py_gru

_version = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2])


def chaotic(cell, T=60, B=2, H=4, scale=8.0, seed=0, device="cpu", dtype=torch.float64):
    """Recurrent weights large enough that per-step Newton needs many more than
    one iteration (|df/ds| > 1 over long stretches)."""
    g = torch.Generator().manual_seed(seed)
    K, G, P, _ = flashrnn.CELLS[cell]
    u = 2.0 * torch.randn(T, B, G, H, generator=g, dtype=torch.float64)
    p = scale * torch.randn(P, H, generator=g, dtype=torch.float64)
    s0 = 0.5 * torch.randn(B, K, H, generator=g, dtype=torch.float64)
    return [t.to(device, dtype) for t in (u, p, s0)]


def opts(**kw):
    kw.setdefault("mode", "newton")
    kw.setdefault("max_iters", 1)
    return flashrnn.SolverOptions(**kw)


def solve_recording(fn):
    """Runs fn() and returns (result, [NonConvergenceWarning records])."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = fn()
    return out, [w for w in rec if issubclass(w.category, flashrnn.NonConvergenceWarning)]


def test_category_and_default():
    assert issubclass(flashrnn.NonConvergenceWarning, RuntimeWarning)
    assert flashrnn.SolverOptions().report_nonconvergence == "warn"
    assert flashrnn.ParaGRU(2, 3).options.report_nonconvergence == "warn"


def test_validation_names_argument_and_values():
    with pytest.raises(ValueError, match=r"report_nonconvergence must be one of .*'warn'.*'raise'.*'ignore'.*'loud'"):
        flashrnn.SolverOptions(report_nonconvergence="loud")
    with pytest.raises(ValueError, match="report_nonconvergence"):
        flashrnn.ParaLSTM(2, 3, report_nonconvergence="error")
    with pytest.raises(ValueError, match="report_nonconvergence"):
        flashrnn.RNN(py_gru, 2, 3, report_nonconvergence=None)
    with pytest.raises(ValueError, match="damping"):
        flashrnn.ParaGRU(2, 3, damping=0.0)
    u, p, _ = chaotic("para_gru", T=3)
    with pytest.raises(TypeError, match="options"):
        flashrnn.cell_solve("para_gru", u, p, None, {"report_nonconvergence": "raise"})
    with pytest.raises(TypeError, match="options"):
        flashrnn.generic_solve(py_gru, u, p, None, "raise")


@pytest.mark.parametrize("cell", ["para_gru", "para_lstm", "diag_tanh"])
def test_warn_under_fallback_equals_stepping(cell):
    u, p, s0 = chaotic(cell, scale=12.0 if cell == "para_lstm" else 8.0)
    (states, rep), rec = solve_recording(lambda: flashrnn.cell_solve(cell, u, p, s0, opts()))
    r = flashrnn.SolveReport.from_tensor(rep)
    assert not r.converged and r.lanes_fell_back > 0 and r.iterations == 1
    assert len(rec) == 1
    text = str(rec[0].message)
    assert rec[0].filename == __file__  # attributed to the caller, not flashrnn's internals
    assert f"the {cell} forward solve" in text
    assert "mode 'newton'" in text and "1 Newton iteration(s) (max_iters=1)" in text
    assert f"final residual {r.final_residual:.3g}" in text
    assert (f"on_nonconvergence='fallback_sequential' recomputed {r.lanes_fell_back} of {r.lanes} "
            "lanes by exact sequential stepping") in text
    assert "non-finite" not in text
    torch.testing.assert_close(states, loop_reference(cell, u, p, s0), rtol=1e-12, atol=1e-12)


def test_raise_and_ignore():
    u, p, s0 = chaotic("para_gru")
    with pytest.raises(flashrnn.ConvergenceError,
                       match=r"did not converge: mode 'newton'.*report_nonconvergence='raise'"):
        flashrnn.cell_solve("para_gru", u, p, s0, opts(report_nonconvergence="raise"))
    (states, rep), rec = solve_recording(
        lambda: flashrnn.cell_solve("para_gru", u, p, s0, opts(report_nonconvergence="ignore")))
    assert rec == []
    r = flashrnn.SolveReport.from_tensor(rep)
    assert not r.converged and r.lanes_fell_back == r.lanes  # the event happened; only silent
    torch.testing.assert_close(states, loop_reference("para_gru", u, p, s0), rtol=1e-12, atol=1e-12)


def test_no_warning_when_converged():
    u, p, s0 = chaotic("para_gru", scale=0.5)
    for mode in ("newton", "newton_chunked", "sequential", "auto"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", flashrnn.NonConvergenceWarning)
            states, rep = flashrnn.cell_solve("para_gru", u, p, s0, flashrnn.SolverOptions(mode=mode))
        assert flashrnn.SolveReport.from_tensor(rep).converged


def test_keep_last_iterate_says_result_is_inexact():
    u, p, s0 = chaotic("diag_tanh")
    (states, rep), rec = solve_recording(lambda: flashrnn.cell_solve(
        "diag_tanh", u, p, s0, opts(on_nonconvergence="keep_last_iterate")))
    r = flashrnn.SolveReport.from_tensor(rep)
    assert not r.converged and r.lanes_fell_back == 0
    assert len(rec) == 1
    assert "keep_last_iterate' kept the last Newton iterate" in str(rec[0].message)
    assert "NOT the exact recurrence" in str(rec[0].message)
    assert not torch.allclose(states, loop_reference("diag_tanh", u, p, s0))


def test_policy_raise_precedes_reporting():
    u, p, s0 = chaotic("para_gru")
    for reporting in ("warn", "ignore"):
        with pytest.raises(flashrnn.ConvergenceError):
            flashrnn.cell_solve("para_gru", u, p, s0, opts(on_nonconvergence="raise",
                                                           report_nonconvergence=reporting))


def test_nonfinite_iterates_reported():
    # NaN in u with check_finite off: stepping gives NaN from there on, Newton
    # meets non-finite iterates, the fallback returns exactly stepping.
    u, p, s0 = chaotic("para_gru", scale=0.5)
    u[20, 0, 2, 1] = math.nan
    (states, rep), rec = solve_recording(lambda: flashrnn.cell_solve(
        "para_gru", u, p, s0, flashrnn.SolverOptions(mode="newton", check_finite=False)))
    r = flashrnn.SolveReport.from_tensor(rep)
    assert r.nonfinite_detected and not r.converged
    assert len(rec) == 1 and "non-finite iterates detected" in str(rec[0].message)
    torch.testing.assert_close(states, loop_reference("para_gru", u, p, s0), equal_nan=True)
    with pytest.raises(flashrnn.ConvergenceError, match="non-finite"):
        flashrnn.cell_solve("para_gru", u, p, s0, flashrnn.SolverOptions(
            mode="newton", check_finite=False, report_nonconvergence="raise"))


@pytest.mark.parametrize("cls", [flashrnn.ParaGRU, flashrnn.ParaLSTM])
def test_modules(cls):
    torch.manual_seed(0)
    kw = dict(num_layers=2, mode="newton", max_iters=1)
    m = cls(3, 4, **kw).double()
    with torch.no_grad():
        for layer in range(2):
            getattr(m, f"weight_hh_l{layer}").mul_(30.0)
    x = (3.0 * torch.randn(60, 2, 3, dtype=torch.float64)).requires_grad_(True)
    (out, _), rec = solve_recording(lambda: m(x))
    assert rec and all(r.filename == __file__ for r in rec)
    assert len(rec) == sum(not r.converged for r in m.last_report) >= 1
    ref = cls(3, 4, num_layers=2, mode="sequential").double()
    ref.load_state_dict(m.state_dict())
    torch.testing.assert_close(out, ref(x)[0], rtol=1e-12, atol=1e-12)
    out.sum().backward()  # the fallback's result is differentiable as usual
    assert torch.isfinite(x.grad).all()

    quiet = cls(3, 4, report_nonconvergence="ignore", **kw).double()
    quiet.load_state_dict(m.state_dict())
    _, rec = solve_recording(lambda: quiet(x))
    assert rec == [] and not all(r.converged for r in quiet.last_report)
    loud = cls(3, 4, report_nonconvergence="raise", **kw).double()
    loud.load_state_dict(m.state_dict())
    with pytest.raises(flashrnn.ConvergenceError, match=cls.cell):
        loud(x)


def test_module_damping_reaches_solver():
    m = flashrnn.ParaGRU(3, 4, mode="newton", damping=0.5, max_iters=3, report_nonconvergence="ignore")
    assert m.options.damping == 0.5
    m(torch.randn(5, 2, 3))
    r = m.last_report[0]
    # Damped Newton is not exact after T iterations: a 5-step solve needs more than 3.
    assert r.iterations == 3 and not r.converged


# ---- cells written in Python ----

def test_python_cell_warn_raise_ignore():
    u, p, s0 = chaotic("para_gru", T=40)
    ref = loop_reference("para_gru", u, p, s0)
    (states, rep), rec = solve_recording(lambda: flashrnn.generic_solve(py_gru, u, p, s0, opts()))
    r = flashrnn.SolveReport.from_tensor(rep)
    assert not r.converged and r.lanes_fell_back == r.lanes == 8
    assert len(rec) == 1 and rec[0].filename == __file__
    text = str(rec[0].message)
    assert "the Python cell py_gru forward solve (T=40, 8 lanes)" in text
    assert "1 Newton iteration(s) (max_iters=1)" in text and "final residual" in text
    assert "recomputed 8 of 8 lanes by exact sequential stepping" in text
    torch.testing.assert_close(states, ref, rtol=1e-12, atol=1e-12)

    with pytest.raises(flashrnn.ConvergenceError, match="report_nonconvergence='raise'"):
        flashrnn.generic_solve(py_gru, u, p, s0, opts(report_nonconvergence="raise"))
    with pytest.raises(flashrnn.ConvergenceError, match="on_nonconvergence='raise'"):
        flashrnn.generic_solve(py_gru, u, p, s0, opts(on_nonconvergence="raise",
                                                      report_nonconvergence="ignore"))
    (states, rep), rec = solve_recording(lambda: flashrnn.generic_solve(
        py_gru, u, p, s0, opts(report_nonconvergence="ignore")))
    assert rec == [] and not flashrnn.SolveReport.from_tensor(rep).converged
    torch.testing.assert_close(states, ref, rtol=1e-12, atol=1e-12)


def test_python_cell_converged_is_silent_and_nonfinite_reported():
    u, p, s0 = chaotic("para_gru", T=20, scale=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", flashrnn.NonConvergenceWarning)
        flashrnn.generic_solve(py_gru, u, p, s0, flashrnn.SolverOptions(mode="newton"))
    u[7, 1, 0, 2] = math.nan
    (states, rep), rec = solve_recording(lambda: flashrnn.generic_solve(
        py_gru, u, p, s0, flashrnn.SolverOptions(mode="newton")))
    assert flashrnn.SolveReport.from_tensor(rep).nonfinite_detected
    assert len(rec) == 1 and "non-finite iterates detected" in str(rec[0].message)
    torch.testing.assert_close(states, loop_reference("para_gru", u, p, s0), equal_nan=True)


def test_python_cell_rnn_module():
    torch.manual_seed(1)
    m = flashrnn.RNN(py_gru, 3, 4, mode="newton", max_iters=1).double()
    with torch.no_grad():
        m.weight_hh_l0.mul_(30.0)
    x = 3.0 * torch.randn(40, 2, 3, dtype=torch.float64)
    (out, _), rec = solve_recording(lambda: m(x))
    assert len(rec) == 1 and "Python cell py_gru" in str(rec[0].message)
    ref = flashrnn.ParaGRU(3, 4, mode="sequential").double()
    ref.load_state_dict(m.state_dict())
    torch.testing.assert_close(out, ref(x)[0], rtol=1e-12, atol=1e-12)
    loud = flashrnn.RNN(py_gru, 3, 4, mode="newton", max_iters=1, report_nonconvergence="raise").double()
    loud.load_state_dict(m.state_dict())
    with pytest.raises(flashrnn.ConvergenceError):
        loud(x)


# ---- torch.compile (custom ops, PyTorch >= 2.4) ----

@pytest.mark.skipif(_version < (2, 4), reason="torch.library custom ops need PyTorch >= 2.4")
def test_compiled_op_reports():
    u, p, s0 = chaotic("para_gru", dtype=torch.float32)

    def f(reporting):
        def g(u, p, s0):
            return flashrnn.cell_solve("para_gru", u, p, s0,
                                       opts(report_nonconvergence=reporting))[0].sum()
        return torch.compile(g, fullgraph=True)

    _, rec = solve_recording(lambda: f("warn")(u, p, s0))
    assert len(rec) == 1 and "para_gru forward solve" in str(rec[0].message)
    with pytest.raises(flashrnn.ConvergenceError):
        f("raise")(u, p, s0)
    _, rec = solve_recording(lambda: f("ignore")(u, p, s0))
    assert rec == []


# ---- CUDA (the lead's GPU run) ----

cuda_ok = torch.cuda.is_available() and flashrnn.HAVE_EXTENSION and flashrnn.build_info().get("cuda")


@pytest.mark.skipif(not cuda_ok, reason="needs a GPU and FlashRNN built with CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_reports(dtype):
    u, p, s0 = chaotic("para_gru", dtype=dtype)
    ref = loop_reference("para_gru", *(t.double() for t in (u, p, s0)))
    ud, pd, sd = (t.cuda() for t in (u, p, s0))
    (states, rep), rec = solve_recording(lambda: flashrnn.cell_solve("para_gru", ud, pd, sd, opts()))
    r = flashrnn.SolveReport.from_tensor(rep)
    assert not r.converged and r.lanes_fell_back > 0
    assert len(rec) == 1 and f"recomputed {r.lanes_fell_back} of {r.lanes} lanes" in str(rec[0].message)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(states.double().cpu(), ref, **tol)
    with pytest.raises(flashrnn.ConvergenceError):
        flashrnn.cell_solve("para_gru", ud, pd, sd, opts(report_nonconvergence="raise"))
    _, rec = solve_recording(lambda: flashrnn.cell_solve(
        "para_gru", ud, pd, sd, opts(report_nonconvergence="ignore")))
    assert rec == []
