"""Bridge to the native extension flashrnn._C: DLPack hand-off, streams,
solver options and the solve report."""
from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from typing import Optional

import torch
try:
    from torch.utils.dlpack import to_dlpack
except ImportError:  # pragma: no cover - future PyTorch without the legacy helper
    def to_dlpack(t):
        return t.__dlpack__()

try:
    from . import _C  # noqa: F401
    HAVE_EXTENSION = True
    _IMPORT_ERROR: Optional[BaseException] = None
except ImportError as exc:  # pragma: no cover - exercised only without a build
    _C = None
    HAVE_EXTENSION = False
    _IMPORT_ERROR = exc

if HAVE_EXTENSION:
    ConvergenceError = _C.ConvergenceError
else:  # pragma: no cover
    class ConvergenceError(RuntimeError):
        """Newton did not converge and on_nonconvergence='raise'."""


class NonConvergenceWarning(RuntimeWarning):
    """A forward solve did not converge (or met non-finite iterates) and the
    configured policy handled it; issued when report_nonconvergence='warn'.
    Filter by category, e.g. warnings.simplefilter("ignore", NonConvergenceWarning)."""


MODES = ("auto", "sequential", "newton", "newton_chunked")
POLICIES = ("fallback_sequential", "raise", "keep_last_iterate")
REPORTING = ("warn", "raise", "ignore")
_MODE_CODE = {m: i for i, m in enumerate(MODES)}
#: Largest SolverOptions.sequential_segments (flashrnn::max_sequential_segments:
#: the CUDA backend's segmented sequential kernel's limit).
MAX_SEQUENTIAL_SEGMENTS = 16


def ext():
    """The native module, or a clear error saying how to build it."""
    if _C is None:
        raise ImportError(
            "flashrnn: the native extension flashrnn._C is not built/importable "
            f"({_IMPORT_ERROR}). Build with cmake -DFLASHRNN_ENABLE_PYTHON=ON and put "
            "<build>/python on PYTHONPATH, or `pip install .`")
    return _C


@dataclasses.dataclass(frozen=True)
class SolverOptions:
    """How the forward recurrence is solved (see flashrnn/core/options.hpp).

    mode: 'auto' (backend's tuning table), 'sequential', 'newton', 'newton_chunked'.
    max_iters: Newton iterations at most. atol/rtol: stopping tolerances
    (None = the precision's default). damping in (0, 1]. chunk_length: steps
    per chunk for 'newton_chunked' (0 = automatic). sequential_segments (CUDA
    backend, mode 'sequential' or 'auto' picking it): segments each lane's
    sequence is cut into by the exact segmented sequential kernel; 0 = the
    backend's tuned choice (default), 1 = one thread per lane (plain stepping,
    best for cells with very long memory, where segments cost up to ~2x), up
    to 8; results are bitwise identical for every value, only speed differs;
    other backends ignore it. on_nonconvergence (what
    the solver does with lanes that did not converge): 'fallback_sequential'
    (default: recompute them by exact sequential stepping), 'raise'
    (ConvergenceError before any fallback), 'keep_last_iterate'.
    check_finite: reject non-finite inputs. num_threads: CPU threads (0 = all).
    report_nonconvergence (how Python tells you the solve did not converge, i.e.
    the report says converged=False, lanes fell back or non-finite iterates;
    applied after the policy): 'warn' (default: a NonConvergenceWarning whose
    text gives the mode, iterations, residual and what the policy did),
    'raise' (ConvergenceError, also after a successful fallback), 'ignore'
    (only the report says so).
    """
    mode: str = "auto"
    max_iters: int = 50
    atol: Optional[float] = None
    rtol: Optional[float] = None
    damping: float = 1.0
    chunk_length: int = 0
    sequential_segments: int = 0
    on_nonconvergence: str = "fallback_sequential"
    check_finite: bool = True
    num_threads: int = 0
    report_nonconvergence: str = "warn"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"flashrnn: mode must be one of {MODES}, got {self.mode!r}")
        if self.on_nonconvergence not in POLICIES:
            raise ValueError(f"flashrnn: on_nonconvergence must be one of {POLICIES}, "
                             f"got {self.on_nonconvergence!r}")
        if self.report_nonconvergence not in REPORTING:
            raise ValueError(f"flashrnn: report_nonconvergence must be one of {REPORTING}, "
                             f"got {self.report_nonconvergence!r}")
        if not isinstance(self.max_iters, int) or self.max_iters < 1:
            raise ValueError(f"flashrnn: max_iters must be an int >= 1, got {self.max_iters!r}")
        if not (0.0 < float(self.damping) <= 1.0):
            raise ValueError(f"flashrnn: damping must be in (0, 1], got {self.damping!r}")
        v = self.sequential_segments
        if (not isinstance(v, int) or isinstance(v, bool)
                or not 0 <= v <= MAX_SEQUENTIAL_SEGMENTS):
            raise ValueError(f"flashrnn: sequential_segments must be an int in "
                             f"0..{MAX_SEQUENTIAL_SEGMENTS} (0 = the backend's tuned choice), "
                             f"got {v!r}")
        for name in ("atol", "rtol"):
            v = getattr(self, name)
            if v is not None and not (float(v) >= 0.0):
                raise ValueError(f"flashrnn: {name} must be >= 0 or None, got {v!r}")

    def native_kwargs(self) -> dict:
        return dict(mode=self.mode, max_iters=int(self.max_iters),
                    atol=-1.0 if self.atol is None else float(self.atol),
                    rtol=-1.0 if self.rtol is None else float(self.rtol),
                    damping=float(self.damping), chunk_length=int(self.chunk_length),
                    sequential_segments=int(self.sequential_segments),
                    on_nonconvergence=self.on_nonconvergence,
                    check_finite=bool(self.check_finite))


@dataclasses.dataclass(frozen=True)
class SolveReport:
    """What a forward solve did: mode used, Newton iterations (max over lanes),
    final residual, whether every lane converged, lanes solved and lanes
    recomputed by sequential stepping."""
    mode: str
    iterations: int
    final_residual: float
    converged: bool
    lanes: int
    lanes_fell_back: int
    nonfinite_detected: bool = False

    # A report crosses autograd / torch.library boundaries as a float64 tensor.
    def to_tensor(self) -> torch.Tensor:
        return torch.tensor([_MODE_CODE.get(self.mode, 0), self.iterations, self.final_residual,
                             float(self.converged), self.lanes, self.lanes_fell_back,
                             float(self.nonfinite_detected)], dtype=torch.float64)

    @staticmethod
    def from_tensor(t: torch.Tensor) -> "SolveReport":
        v = t.detach().cpu().tolist()
        return SolveReport(MODES[int(v[0])], int(v[1]), float(v[2]), bool(v[3]), int(v[4]),
                           int(v[5]), bool(v[6]))

    @staticmethod
    def from_dict(d: dict) -> "SolveReport":
        mode = "newton_chunked" if d["mode"] == "newton_chunked" else d["mode"]
        return SolveReport(mode, int(d["iterations"]), float(d["final_residual"]),
                           bool(d["converged"]), int(d["lanes"]), int(d["lanes_fell_back"]),
                           bool(d.get("nonfinite_detected", False)))


REPORT_SIZE = 7

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))


def _user_stacklevel() -> int:
    """stacklevel that attributes a warning to the first frame outside
    flashrnn and torch (the user's call), whichever path (module, functional,
    autograd.Function, torch.library op) led here."""
    level, f = 1, sys._getframe(1)
    while f is not None:
        fn = os.path.abspath(f.f_code.co_filename)
        generated = f.f_code.co_filename.startswith("<eval_with_key")  # torch.fx / compile
        if not (fn.startswith(_PACKAGE_DIR) or fn.startswith(_TORCH_DIR) or generated):
            return level
        f, level = f.f_back, level + 1
    return 1


def nonconvergence_message(what: str, rep: SolveReport, max_iters: int, policy: str) -> str:
    """One sentence on a solve that did not converge: mode, iterations,
    residual, non-finite iterates, and what the policy did with the result."""
    msg = (f"flashrnn: {what} did not converge: mode '{rep.mode}', {rep.iterations} Newton "
           f"iteration(s) (max_iters={max_iters}), final residual {rep.final_residual:.3g}")
    if rep.nonfinite_detected:
        msg += ", non-finite iterates detected"
    if policy == "fallback_sequential":
        msg += (f"; on_nonconvergence='fallback_sequential' recomputed {rep.lanes_fell_back} of "
                f"{rep.lanes} lanes by exact sequential stepping, so the result equals sequential "
                "stepping (at sequential speed)")
    elif policy == "keep_last_iterate":
        msg += (f"; on_nonconvergence='keep_last_iterate' kept the last Newton iterate of "
                f"{rep.lanes} lanes: the result is NOT the exact recurrence")
    return msg


def check_report(what: str, rep: SolveReport, max_iters: int, policy: str, reporting: str) -> None:
    """Applies report_nonconvergence to a finished solve: warn, raise or nothing."""
    if reporting == "ignore":
        return
    if rep.converged and rep.lanes_fell_back == 0 and not rep.nonfinite_detected:
        return
    msg = nonconvergence_message(what, rep, max_iters, policy)
    if reporting == "raise":
        raise ConvergenceError(msg + " (raised because report_nonconvergence='raise')")
    warnings.warn(msg + ". Raise max_iters, try mode='newton_chunked' or damping < 1; "
                  "report_nonconvergence='ignore' silences this", NonConvergenceWarning,
                  stacklevel=_user_stacklevel())


def dl(t: Optional[torch.Tensor]):
    """A DLPack capsule sharing t's memory (None stays None)."""
    if t is None:
        return None
    return to_dlpack(t.detach())


def stream_of(t: torch.Tensor) -> int:
    """The current CUDA stream of t's device as an int (0 on the CPU)."""
    if t.device.type == "cuda":
        return int(torch.cuda.current_stream(t.device).cuda_stream)
    return 0


SUPPORTED_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64, torch.bfloat16, torch.float16),
}


def check_dtype_device(where: str, name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{where}: '{name}' must be a torch.Tensor, got {type(t).__name__}")
    allowed = SUPPORTED_DTYPES.get(t.device.type)
    if allowed is None:
        raise ValueError(f"{where}: '{name}' is on device '{t.device}'; FlashRNN runs on cpu and cuda")
    if t.dtype not in allowed:
        extra = (" (bfloat16/float16 run on CUDA only; use float32 on the CPU)"
                 if t.dtype in (torch.bfloat16, torch.float16) else "")
        raise TypeError(f"{where}: '{name}' has dtype {t.dtype}; on {t.device.type} FlashRNN "
                        f"supports {', '.join(str(d) for d in allowed)}{extra}")
