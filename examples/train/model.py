"""A small sequence model: embedding -> recurrent stack -> linear head, where
the recurrent stack is a FlashRNN layer (ParaGRU / ParaLSTM) or, for
comparison, torch.nn.GRU / torch.nn.LSTM of the same width."""
from __future__ import annotations

import torch
from torch import nn

import flashrnn

RNNS = ("paragru", "paralstm", "torch-gru", "torch-lstm")


class SequenceModel(nn.Module):
    def __init__(self, vocab_size: int, num_classes: int, rnn: str = "paragru", d_model: int = 64,
                 hidden: int = 128, layers: int = 2, heads: int = 1, dropout: float = 0.0,
                 mode: str = "auto"):
        super().__init__()
        if rnn not in RNNS:
            raise ValueError(f"--rnn must be one of {RNNS}, got {rnn!r}")
        self.rnn_kind = rnn
        self.embed = nn.Embedding(vocab_size, d_model)
        kw = dict(num_layers=layers, batch_first=True, dropout=dropout)
        if rnn == "paragru":
            self.rnn = flashrnn.ParaGRU(d_model, hidden, num_heads=heads, mode=mode, **kw)
        elif rnn == "paralstm":
            self.rnn = flashrnn.ParaLSTM(d_model, hidden, num_heads=heads, mode=mode, **kw)
        elif rnn == "torch-gru":
            self.rnn = nn.GRU(d_model, hidden, **kw)
        else:
            self.rnn = nn.LSTM(d_model, hidden, **kw)
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, tokens: torch.Tensor, state=None):
        y, state = self.rnn(self.embed(tokens), state)
        return self.head(self.norm(y)), state

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
            x = self.embed(tok[:, 0])
            if isinstance(self.rnn, flashrnn.modules._Layered):
                h, state = self.rnn.step(x, state)
            else:
                h, state = self.rnn(x[:, None], state)
                h = h[:, 0]
            last = self.head(self.norm(h))
        return torch.cat(out, dim=1)

    def solve_summary(self) -> str:
        if not isinstance(self.rnn, flashrnn.modules._Layered) or not self.rnn._last_reports:
            return ""
        reps = self.rnn.last_report
        return " ".join(f"L{i}:{r.mode}/{r.iterations}it" for i, r in enumerate(reps))
