"""Affine scans out[t] = A[t] out[t-1] + c[t] over many lanes: the linear
solve inside every Newton iteration and every adjoint.

A is diagonal (T, N, K), block-diagonal (T, N, K/b, b, b: the b x b blocks
on the diagonal of each K x K map) or dense (T, N, K, K). CPU float32/float64
tensors of all three structures go to the library's scan (flashrnn._C.affine_scan,
built on core's Affine composition and the CPU backend's executors); other
devices use a log-depth (Hillis-Steele) scan written in PyTorch.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import _ext


def affine_scan(A: torch.Tensor, c: torch.Tensor, s0: Optional[torch.Tensor] = None,
                reverse: bool = False, num_threads: int = 0) -> torch.Tensor:
    """A (T, N, K) diagonal, (T, N, K/b, b, b) block-diagonal or (T, N, K, K)
    dense; c (T, N, K); s0 (N, K) or None.

    Forward: out[t] = A[t] out[t-1] + c[t] with out[-1] = s0 (zeros if None).
    reverse=True: out[t] = A[t] out[t+1] + c[t] with out[T] = s0.
    """
    if c.dim() != 3:
        raise ValueError(f"flashrnn.affine_scan: 'c' must be (T, N, K), got {tuple(c.shape)}")
    if not _structure_ok(A, c):
        raise ValueError(f"flashrnn.affine_scan: 'A' must be (T, N, K) (diagonal), (T, N, K/b, b, b) "
                         f"(block-diagonal) or (T, N, K, K) (dense) with c's (T, N, K) = "
                         f"{tuple(c.shape)}, got {tuple(A.shape)}")
    if (c.device.type == "cpu" and c.dtype in (torch.float32, torch.float64)
            and _ext.HAVE_EXTENSION):
        A = A.to(c.dtype).contiguous()
        c = c.contiguous()
        s0 = None if s0 is None else s0.to(c.dtype).contiguous()
        out = torch.empty_like(c)
        _ext.ext().affine_scan(_ext.dl(A), _ext.dl(c), _ext.dl(s0), _ext.dl(out), reverse,
                               num_threads)
        return out
    return affine_scan_torch(A, c, s0, reverse)


def _structure_ok(A: torch.Tensor, c: torch.Tensor) -> bool:
    T, N, K = c.shape
    if A.shape[:2] != (T, N):
        return False
    if A.dim() == 3:
        return A.shape[2] == K
    if A.dim() == 4:
        return A.shape[2:] == (K, K)
    if A.dim() == 5:
        return A.shape[3] == A.shape[4] and A.shape[2] * A.shape[3] == K
    return False


def affine_scan_torch(A: torch.Tensor, c: torch.Tensor, s0: Optional[torch.Tensor] = None,
                      reverse: bool = False) -> torch.Tensor:
    """The same scan in PyTorch ops: log2(T) rounds of map composition."""
    if reverse:
        return affine_scan_torch(A.flip(0), c.flip(0), s0, False).flip(0)
    if A.dim() == 5:  # block-diagonal: a dense scan over N * K/b lanes of size b
        T, N, nb, b, _ = A.shape
        out = affine_scan_torch(A.reshape(T, N * nb, b, b), c.reshape(T, N * nb, b),
                                None if s0 is None else s0.reshape(N * nb, b))
        return out.reshape(T, N, nb * b)
    diagonal = A.dim() == 3
    if s0 is not None:  # fold the initial state into the first map's offset
        first = A[0] * s0 if diagonal else (A[0] @ s0.unsqueeze(-1)).squeeze(-1)
        c = torch.cat([(c[0] + first).unsqueeze(0), c[1:]])
    A = A.clone()
    c = c.clone()
    A[0] = 0
    T, shift = c.shape[0], 1
    while shift < T:
        A_prev, c_prev = A[:-shift], c[:-shift]
        A_cur, c_cur = A[shift:], c[shift:]
        if diagonal:
            c_new = A_cur * c_prev + c_cur
            A_new = A_cur * A_prev
        else:
            c_new = (A_cur @ c_prev.unsqueeze(-1)).squeeze(-1) + c_cur
            A_new = A_cur @ A_prev
        A = torch.cat([A[:shift], A_new])
        c = torch.cat([c[:shift], c_new])
        shift *= 2
    return c
