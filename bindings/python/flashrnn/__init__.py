"""FlashRNN for PyTorch: nonlinear RNNs (GRU/LSTM-like) solved in parallel
along the sequence with Newton's method and parallel affine scans.

    import flashrnn
    rnn = flashrnn.ParaGRU(input_size=64, hidden_size=256, num_layers=2, batch_first=True)
    out, h_n = rnn(x)              # like torch.nn.GRU
    rnn.last_report                # Newton iterations / residual per layer
    y, h = rnn.step(x_t, h)        # autoregressive generation

Any cell from Python: see flashrnn.cell / flashrnn.PythonCell / flashrnn.RNN.
"""
from ._ext import HAVE_EXTENSION, ConvergenceError, NonConvergenceWarning, SolveReport, SolverOptions
from .functional import CELLS, HAS_LIBRARY_OPS, cell_solve, cell_step
from .generic import PythonCell, RNN, cell, generic_solve
from .modules import ParaGRU, ParaLSTM
from .scan import affine_scan, affine_scan_torch

__version__ = "0.1.0"


def build_info() -> dict:
    """How the native extension was built (CPU runtime, CUDA, DLPack version)."""
    from ._ext import ext
    return dict(ext().build_info())


__all__ = [
    "ParaGRU", "ParaLSTM", "RNN", "PythonCell", "cell", "cell_solve", "cell_step",
    "generic_solve", "affine_scan", "affine_scan_torch", "SolverOptions", "SolveReport",
    "ConvergenceError", "NonConvergenceWarning", "CELLS", "HAVE_EXTENSION", "HAS_LIBRARY_OPS", "build_info",
]
