"""A small sequence model: embedding -> recurrent layers -> LayerNorm ->
linear head, where the recurrence is a FlashRNN layer (ParaGRU / ParaLSTM) or,
for comparison, torch.nn.GRU / torch.nn.LSTM of the same width.

Two layouts (`block`), the same for every recurrence kind:

* ``stack``: a plain multi-layer RNN (the layers feed each other directly).
* ``residual``: each layer is a pre-norm block, as in a Transformer or in the
  ParaRNN paper's models: ``x + W_o RNN(LN(x))``, then ``x + MLP(LN(x))``
  (GELU, ``mlp_ratio`` x wider). A diagonal recurrence (ParaGRU) mixes
  channels only through its input projection; the output projection and the
  MLP give it the cross-channel mixing a dense nn.GRU has inside its cell.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

import flashrnn

RNNS = ("paragru", "paralstm", "torch-gru", "torch-lstm")
BLOCKS = ("stack", "residual")


def make_rnn(kind: str, d_in: int, hidden: int, layers: int, heads: int, dropout: float, mode: str):
    kw = dict(num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
    if kind == "paragru":
        return flashrnn.ParaGRU(d_in, hidden, num_heads=heads, mode=mode, **kw)
    if kind == "paralstm":
        return flashrnn.ParaLSTM(d_in, hidden, num_heads=heads, mode=mode, **kw)
    if kind == "torch-gru":
        return nn.GRU(d_in, hidden, **kw)
    return nn.LSTM(d_in, hidden, **kw)


def init_update_gate(rnn: nn.Module, lo: float, hi: float) -> None:
    """Spread the GRU update gates' biases so that at initialisation the units
    keep their state for 1/sigmoid(-b) steps, b ~ U(lo, hi) (b < 0: slower
    than the default init). Applied the same way to ParaGRU (h' = z c + (1-z) h:
    bias -b on z) and nn.GRU (h' = (1-z) n + z h: bias +b on z, bias_hh 0)."""
    if isinstance(rnn, flashrnn.ParaGRU):
        H, nh = rnn.hidden_size, rnn.num_heads
        for layer in range(rnn.num_layers):
            b = getattr(rnn, f"bias_ih_l{layer}")
            if b is not None:  # rows: (heads, gate, H/heads), gate 0 = z
                with torch.no_grad():
                    b.view(nh, 3, H // nh)[:, 0].uniform_(lo, hi)
    elif isinstance(rnn, nn.GRU):
        H = rnn.hidden_size
        for layer in range(rnn.num_layers):
            with torch.no_grad():  # rows (r, z, n)
                getattr(rnn, f"bias_ih_l{layer}")[H:2 * H].uniform_(-hi, -lo)
                getattr(rnn, f"bias_hh_l{layer}")[H:2 * H].zero_()


def is_flash(rnn: nn.Module) -> bool:
    return isinstance(rnn, flashrnn.modules._Layered)


def rnn_step(rnn: nn.Module, x: torch.Tensor, state):
    """One time step x (B, d_in) -> (h (B, H), state) for either kind."""
    if is_flash(rnn):
        return rnn.step(x, state)
    h, state = rnn(x[:, None], state)
    return h[:, 0], state


class CausalConv(nn.Module):
    """Depthwise causal convolution over time (kernel k, one filter per
    channel), as in the Mamba and Griffin blocks: it hands the recurrence the
    last k inputs directly, which a diagonal recurrence otherwise has to keep
    in decaying per-channel sums. State for step(): the last k-1 inputs."""

    def __init__(self, channels: int, k: int):
        super().__init__()
        self.k = k
        self.conv = nn.Conv1d(channels, channels, k, groups=channels, padding=0)

    def forward(self, x, buf=None):
        # x (B, T, C); buf (B, k-1, C) holds the inputs before x (zeros at the start).
        if buf is None:
            buf = x.new_zeros(x.shape[0], self.k - 1, x.shape[2])
        full = torch.cat([buf, x], dim=1)
        y = self.conv(full.transpose(1, 2)).transpose(1, 2)
        return y, full[:, full.shape[1] - (self.k - 1):]

    def step(self, x, buf=None):
        y, buf = self.forward(x[:, None], buf)
        return y[:, 0], buf


class ResidualBlock(nn.Module):
    """Pre-norm RNN mixer + pre-norm MLP, each with a residual connection."""

    def __init__(self, kind: str, d_model: int, hidden: int, heads: int, dropout: float, mode: str,
                 mlp_ratio: float, out_gate: bool = False, conv: int = 0):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        # Optional short causal conv before the recurrence (same for every kind).
        self.conv = CausalConv(d_model, conv) if conv > 1 else None
        self.rnn = make_rnn(kind, d_model, hidden, 1, heads, 0.0, mode)
        # Optional output gate y * silu(W_g x) (Mamba, the ParaRNN paper's blocks).
        self.gate = nn.Linear(d_model, hidden) if out_gate else None
        self.out = nn.Linear(hidden, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        width = max(1, int(round(mlp_ratio * d_model)))
        self.mlp = nn.Sequential(nn.Linear(d_model, width), nn.GELU(), nn.Linear(width, d_model)) \
            if mlp_ratio > 0 else None
        self.drop = nn.Dropout(dropout)

    def _mlp(self, x):
        return x if self.mlp is None else x + self.drop(self.mlp(self.norm2(x)))

    def _mix(self, x, y):
        return y if self.gate is None else y * F.silu(self.gate(x))

    # With a conv the block's state is (rnn state, conv buffer).
    def _split(self, state):
        if self.conv is None:
            return state, None
        return state if state is not None else (None, None)

    def _join(self, rnn_state, buf):
        return rnn_state if self.conv is None else (rnn_state, buf)

    def forward(self, x, state=None):
        xn = self.norm1(x)
        rnn_state, buf = self._split(state)
        u = xn
        if self.conv is not None:
            u, buf = self.conv(xn, buf)
        y, rnn_state = self.rnn(u, rnn_state)
        return self._mlp(x + self.drop(self.out(self._mix(xn, y)))), self._join(rnn_state, buf)

    def step(self, x, state=None):
        xn = self.norm1(x)
        rnn_state, buf = self._split(state)
        u = xn
        if self.conv is not None:
            u, buf = self.conv.step(xn, buf)
        h, rnn_state = rnn_step(self.rnn, u, rnn_state)
        return self._mlp(x + self.out(self._mix(xn, h))), self._join(rnn_state, buf)


class SequenceModel(nn.Module):
    def __init__(self, vocab_size: int, num_classes: int, rnn: str = "paragru", d_model: int = 64,
                 hidden: int = 128, layers: int = 2, heads: int = 1, dropout: float = 0.0,
                 mode: str = "auto", block: str = "stack", mlp_ratio: float = 4.0,
                 gate_bias: tuple[float, float] | None = None, out_gate: bool = False, conv: int = 0):
        super().__init__()
        if rnn not in RNNS:
            raise ValueError(f"--rnn must be one of {RNNS}, got {rnn!r}")
        if block not in BLOCKS:
            raise ValueError(f"--block must be one of {BLOCKS}, got {block!r}")
        self.rnn_kind, self.block = rnn, block
        self.embed = nn.Embedding(vocab_size, d_model)
        if block == "stack":
            self.rnn = make_rnn(rnn, d_model, hidden, layers, heads, dropout, mode)
            width = hidden
        else:
            self.blocks = nn.ModuleList(ResidualBlock(rnn, d_model, hidden, heads, dropout, mode, mlp_ratio,
                                                      out_gate, conv)
                                        for _ in range(layers))
            width = d_model
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)
        if gate_bias is not None:
            for r in self.recurrent_layers():
                init_update_gate(r, *gate_bias)

    def recurrent_layers(self):
        """The recurrent modules, first to last."""
        return [self.rnn] if self.block == "stack" else [b.rnn for b in self.blocks]

    def forward(self, tokens: torch.Tensor, state=None):
        x = self.embed(tokens)
        if self.block == "stack":
            y, state = self.rnn(x, state)
        else:
            state = state or [None] * len(self.blocks)
            new = []
            for blk, s in zip(self.blocks, state):
                x, s = blk(x, s)
                new.append(s)
            y, state = x, new
        return self.head(self.norm(y)), state

    def step(self, x: torch.Tensor, state):
        """One time step on embedded input x (B, d_model) -> (logits, state)."""
        if self.block == "stack":
            h, state = rnn_step(self.rnn, x, state)
        else:
            new = []
            for blk, s in zip(self.blocks, state):
                x, s = blk.step(x, s)
                new.append(s)
            h, state = x, new
        return self.head(self.norm(h)), state

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, steps: int, temperature: float = 0.8,
                 gen: torch.Generator | None = None) -> torch.Tensor:
        """Autoregressive sampling: prompt (B, T0) -> (B, steps) new tokens.
        The prompt is read in parallel (one forward); each new token then costs
        one recurrent step (FlashRNN's step(), or nn.GRU on one time step)."""
        logits, state = self.forward(prompt)
        out = []
        last = logits[:, -1]
        for _ in range(steps):
            probs = torch.softmax(last.float() / max(temperature, 1e-4), dim=-1)
            tok = torch.multinomial(probs.cpu(), 1, generator=gen).to(prompt.device)
            out.append(tok)
            last, state = self.step(self.embed(tok[:, 0]), state)
        return torch.cat(out, dim=1)

    def solve_summary(self) -> str:
        reps = [r for rnn in self.recurrent_layers() if is_flash(rnn) and rnn._last_reports
                for r in rnn.last_report]
        return " ".join(f"L{i}:{r.mode}/{r.iterations}it" for i, r in enumerate(reps))
