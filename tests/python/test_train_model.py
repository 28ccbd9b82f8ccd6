"""The main job's model (examples/train/model.py): the recurrent state it
hands on must continue a sequence exactly, whether the continuation is read in
parallel (forward) or one token at a time (step, used for sampling). With a
causal conv in the blocks that state includes the conv's input buffer."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "train"))
from model import SequenceModel  # noqa: E402

KINDS = ["paragru", "paralstm", "torch-gru"]


def make(kind, conv, seed=0):
    torch.manual_seed(seed)
    return SequenceModel(11, 11, kind, d_model=16, hidden=16, layers=2, block="residual",
                         mode="sequential", out_gate=True, conv=conv).double().eval()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("conv", [0, 4])
def test_state_continues_forward_and_step(kind, conv):
    model = make(kind, conv)
    tokens = torch.randint(0, 11, (3, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole, _ = model(tokens)
        # Split in two forwards; the split (2 tokens) is shorter than the conv's buffer.
        first, state = model(tokens[:, :2])
        rest, _ = model(tokens[:, 2:], state)
        assert torch.allclose(torch.cat([first, rest], dim=1), whole, atol=1e-12, rtol=0)
        # Prefix forward, then one step per token.
        logits, state = model(tokens[:, :5])
        for t in range(5, 9):
            logits_t, state = model.step(model.embed(tokens[:, t]), state)
            assert torch.allclose(logits_t, whole[:, t], atol=1e-12, rtol=0)


def test_conv_is_causal():
    model = make("paragru", 4)
    tokens = torch.randint(0, 11, (2, 12), generator=torch.Generator().manual_seed(2))
    changed = tokens.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 11
    with torch.no_grad():
        a, _ = model(tokens)
        b, _ = model(changed)
    assert torch.equal(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])
