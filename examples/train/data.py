"""Data for examples/train: a generated state-tracking task and character text."""
from __future__ import annotations

import torch


class ModularCounting:
    """Tokens in {0..m-1}; the target at every step is the running sum of the
    tokens seen so far, modulo m. m = 2 is running parity (XOR), the classic
    task that needs *nonlinear* state tracking: a linear (or positive-diagonal
    linear) recurrence cannot flip a sign bit on demand, a GRU can.

    `p_zero` makes zeros (no-ops) more frequent, so that sequences carry long
    stretches where the state must simply be held.
    """

    def __init__(self, modulus: int = 2, p_zero: float = 0.5, seed: int = 0):
        self.m, self.p_zero = modulus, p_zero
        self.gen = torch.Generator().manual_seed(seed)
        self.vocab_size = modulus
        self.num_classes = modulus

    def batch(self, batch: int, length: int, gen: torch.Generator | None = None):
        g = gen or self.gen
        nonzero = torch.randint(1, self.m, (batch, length), generator=g) if self.m > 2 else \
            torch.ones(batch, length, dtype=torch.long)
        is_zero = torch.rand(batch, length, generator=g) < self.p_zero
        x = torch.where(is_zero, torch.zeros_like(nonzero), nonzero)
        y = torch.cumsum(x, dim=1) % self.m
        return x, y

    def fixed_set(self, n: int, length: int, seed: int):
        return self.batch(n, length, torch.Generator().manual_seed(seed))


class CharText:
    """Character-level language modelling on a text file: 90% train / 10%
    validation split, random windows of `length + 1` characters."""

    def __init__(self, path: str, seed: int = 0):
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            text = f.read()
        if len(text) < 1000:
            raise ValueError(f"{path}: need at least 1000 characters, got {len(text)}")
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        data = torch.tensor([self.stoi[c] for c in text], dtype=torch.long)
        n = int(0.9 * len(data))
        self.train, self.val = data[:n], data[n:]
        self.vocab_size = self.num_classes = len(self.chars)
        self.gen = torch.Generator().manual_seed(seed)

    def _windows(self, data, batch, length, g):
        start = torch.randint(0, len(data) - length - 1, (batch,), generator=g)
        idx = start[:, None] + torch.arange(length + 1)
        w = data[idx]
        return w[:, :-1], w[:, 1:]

    def batch(self, batch: int, length: int, gen: torch.Generator | None = None):
        return self._windows(self.train, batch, length, gen or self.gen)

    def fixed_set(self, n: int, length: int, seed: int):
        return self._windows(self.val, n, length, torch.Generator().manual_seed(seed))

    def encode(self, s: str):
        return [self.stoi[c] for c in s if c in self.stoi]

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)
