#!/usr/bin/env python3
"""Train a small FlashRNN sequence model end to end.

Default: running parity (modular counting with --modulus m) over long
sequences, a generated task that needs nonlinear state tracking; it trains on
a 2-core CPU in a few minutes. With --data FILE: a character language model on
any text file. Uses CUDA automatically when available.

Writes to --out: checkpoint.pt (latest), best.pt, metrics.json, loss_curve.png,
samples.txt. Needs the flashrnn package importable (examples/train/run.sh
builds it and sets PYTHONPATH).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch
from torch.nn import functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from data import CharText, ModularCounting  # noqa: E402
from model import BLOCKS, RNNS, SequenceModel  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="text file: train a character LM on it (default: generated parity task)")
    ap.add_argument("--modulus", type=int, default=2, help="generated task: running sum mod m (2 = parity)")
    ap.add_argument("--rnn", choices=RNNS, default="paragru")
    ap.add_argument("--mode", default="auto", help="FlashRNN solver mode (auto|sequential|newton|newton_chunked)")
    ap.add_argument("--d-model", type=int, default=None)
    ap.add_argument("--hidden", type=int, default=None)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=1, help="block-diagonal input projection heads")
    ap.add_argument("--block", choices=BLOCKS, default=None,
                    help="stack: plain multi-layer RNN; residual: pre-norm RNN + MLP blocks with residual "
                         "connections (see model.py)")
    ap.add_argument("--gate-bias", default=None, metavar="LO,HI",
                    help="GRU update-gate bias init: keep the state for 1/sigmoid(-b) steps, b ~ U(LO, HI), "
                         "e.g. --gate-bias=-4,-1 (same for ParaGRU and nn.GRU; default: the layers' own init)")
    ap.add_argument("--out-gate", action="store_true",
                    help="residual blocks: gate the RNN output with silu(W x) before the output projection")
    ap.add_argument("--conv", type=int, default=None, metavar="K",
                    help="residual blocks: causal depthwise conv of width K before the recurrence "
                         "(0 = none; default 4 with --data, 0 for the generated task)")
    ap.add_argument("--mlp-ratio", type=float, default=4.0, help="residual blocks: MLP width / d_model")
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seq-len", type=int, default=None, help="training sequence length")
    ap.add_argument("--curriculum", type=int, default=None,
                    help="start training at this length and double it whenever validation accuracy at "
                         "the current length reaches 99%% (generated task; default 16, 0 = off)")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--val-every", type=int, default=None)
    ap.add_argument("--val-batches", type=int, default=4)
    ap.add_argument("--time-limit", type=float, default=0, help="stop after this many minutes (0 = no limit)")
    ap.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                    help="bfloat16 autocast (CUDA only)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="build/train-run", help="output directory (default build/train-run, git-ignored)")
    ap.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    ap.add_argument("--sample-len", type=int, default=300, help="characters to sample (--data)")
    ap.add_argument("--prompt", default="\n", help="sampling prompt (--data)")
    ap.add_argument("--no-progress", action="store_true", help="disable the tqdm bar")
    args = ap.parse_args(argv)
    lm = args.data is not None
    gpu = pick_device(args.device).type == "cuda"
    defaults = dict(  # (generated task, character LM on the CPU, character LM on a GPU)
        d_model=(32, 64, 256), hidden=(64, 128, 512), steps=(500, 1000, 2000), batch=(32, 32, 64),
        seq_len=(128, 128, 256), lr=(3e-3, 3e-3, 2e-3), val_every=(25, 50, 100), curriculum=(16, 0, 0),
        block=("stack", "residual", "residual"), conv=(0, 4, 4))
    d_model_given = args.d_model is not None
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v[(2 if gpu else 1) if lm else 0])
    if args.block == "residual" and not d_model_given:
        args.d_model = args.hidden  # residual stream as wide as the recurrence
    return args


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.no_grad()
def evaluate(model, batches, device, amp):
    model.eval()
    tot_loss, tot_tok, correct, seq_ok, seqs = 0.0, 0, 0, 0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        with amp():
            logits, _ = model(x)
        logits = logits.float()
        tot_loss += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        pred = logits.argmax(-1)
        correct += (pred == y).sum().item()
        seq_ok += (pred == y).all(dim=1).sum().item()
        tot_tok += y.numel()
        seqs += y.shape[0]
    model.train()
    return dict(loss=tot_loss / tot_tok, acc=correct / tot_tok, seq_acc=seq_ok / seqs)


def plot_curves(hist, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    steps = [h["step"] for h in hist["train"]]
    loss = [h["loss"] for h in hist["train"]]
    ax.plot(steps, loss, color="tab:blue", alpha=0.3, lw=0.8, label="train (per step" + (", at the curriculum length)" if any(
        h.get("length", 0) < hist.get("val_len", 0) for h in hist["train"]) else ")"))
    k = max(1, len(loss) // 40)
    if len(loss) > k:
        smooth = [sum(loss[max(0, i - k + 1):i + 1]) / len(loss[max(0, i - k + 1):i + 1]) for i in range(len(loss))]
        ax.plot(steps, smooth, color="tab:blue", lw=1.5, label=f"train (mean of {k})")
    if hist["val"]:
        ax.plot([h["step"] for h in hist["val"]], [h["loss"] for h in hist["val"]], "o-",
                color="tab:red", ms=3, label=f"validation (length {hist.get('val_len', '?')})")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if hist["val"] and "acc" in hist["val"][0]:
        ax2 = ax.twinx()
        ax2.plot([h["step"] for h in hist["val"]], [h["acc"] for h in hist["val"]], "s--",
                 color="tab:green", ms=3, label="val accuracy")
        if "long_acc" in hist["val"][0]:
            ax2.plot([h["step"] for h in hist["val"]], [h["long_acc"] for h in hist["val"]], "^:",
                     color="tab:olive", ms=3, label="val accuracy (4x longer)")
        ax2.set_ylabel("accuracy")
        ax2.set_ylim(0, 1.02)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="center right")
    else:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@torch.no_grad()
def newton_check(model, x, amp):
    """Solve the trained network with per-step Newton and compare with exact
    stepping: iterations needed and the largest difference in the outputs."""
    import flashrnn
    rnns = [r for r in model.recurrent_layers() if isinstance(r, flashrnn.modules._Layered)]
    if not rnns:
        return None
    model.eval()
    saved = [r.options for r in rnns]
    out = {}
    try:
        for mode in ("sequential", "newton"):
            for r in rnns:
                r.options = flashrnn.SolverOptions(mode=mode, max_iters=200, on_nonconvergence="keep_last_iterate")
            t = time.time()
            with amp():
                logits, _ = model(x)
            out[mode] = (logits.float(), time.time() - t, [rep for r in rnns for rep in r.last_report])
    finally:
        for r, o in zip(rnns, saved):
            r.options = o
    diff = (out["newton"][0] - out["sequential"][0]).abs().max().item()
    reps = out["newton"][2]
    its = [r.iterations for r in reps]
    text = (f"--- Newton check on the trained model ({x.shape[0]} sequences x {x.shape[1]} steps) ---\n"
            f"per-step Newton: iterations per layer {its}, converged {[r.converged for r in reps]}, "
            f"max |logits(newton) - logits(sequential)| = {diff:.2e}; "
            f"time newton {out['newton'][1] * 1e3:.0f} ms vs sequential {out['sequential'][1] * 1e3:.0f} ms "
            f"on this device")
    return dict(iterations=its, converged=[r.converged for r in reps], max_abs_diff=diff,
                newton_ms=out["newton"][1] * 1e3, sequential_ms=out["sequential"][1] * 1e3, text=text)


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    if args.dtype == "bfloat16" and device.type != "cuda":
        raise SystemExit("--dtype bfloat16 needs a CUDA device (FlashRNN's CPU path is float32/float64)")
    amp = ((lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if args.dtype == "bfloat16"
           else (lambda: torch.autocast(device.type, enabled=False)))
    os.makedirs(args.out, exist_ok=True)

    lm = args.data is not None
    task = CharText(args.data, seed=args.seed) if lm else ModularCounting(args.modulus, seed=args.seed)
    val_sets = [task.fixed_set(args.batch, args.seq_len, seed=10_000 + i) for i in range(args.val_batches)]
    long_sets = [] if lm else [task.fixed_set(args.batch, 4 * args.seq_len, seed=20_000 + i)
                               for i in range(max(1, args.val_batches // 2))]

    gate_bias = tuple(float(v) for v in args.gate_bias.split(",")) if args.gate_bias else None
    model = SequenceModel(task.vocab_size, task.num_classes, args.rnn, args.d_model, args.hidden,
                          args.layers, args.heads, args.dropout, args.mode, args.block,
                          args.mlp_ratio, gate_bias, args.out_gate, args.conv).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01 if lm else 0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps)))))
    hist, start_step, best = {"train": [], "val": []}, 0, float("inf")
    ckpt_path, best_path = os.path.join(args.out, "checkpoint.pt"), os.path.join(args.out, "best.pt")
    if args.resume and os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location=device)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        hist, start_step, best = ck["history"], ck["step"], ck["best_val"]
        print(f"[train] resumed from {ckpt_path} at step {start_step}")

    n_params = sum(p.numel() for p in model.parameters())
    what = f"char LM on {os.path.basename(args.data)} (vocab {task.vocab_size})" if lm else \
        (f"running parity" if args.modulus == 2 else f"running sum mod {args.modulus}")
    print(f"[train] {what}: {args.rnn} d_model={args.d_model} hidden={args.hidden} layers={args.layers} "
          f"heads={args.heads} block={args.block} ({n_params / 1e3:.1f}k params), batch {args.batch} x {args.seq_len} steps, "
          f"device {device}, torch threads {torch.get_num_threads()}")

    def save(path, step):
        torch.save(dict(model=model.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                        history=hist, step=step, best_val=best, args=vars(args),
                        vocab=getattr(task, "chars", None)), path)

    try:
        from tqdm import tqdm
        bar = tqdm(range(start_step, args.steps), initial=start_step, total=args.steps,
                   disable=args.no_progress, dynamic_ncols=True, mininterval=1.0)
    except ImportError:  # tqdm is optional at run time
        bar = range(start_step, args.steps)
    cur_len = args.curriculum if (args.curriculum and not lm) else args.seq_len
    if hist.get("cur_len"):
        cur_len = hist["cur_len"]
    hist["val_len"] = args.seq_len
    t0, tokens, step = time.time(), 0, start_step
    model.train()
    for step in bar:
        x, y = task.batch(args.batch, cur_len)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with amp():
            logits, _ = model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        tokens += x.numel()
        hist["train"].append(dict(step=step + 1, loss=loss.item(), time=time.time() - t0, length=cur_len))
        if (step + 1) % args.val_every == 0 or step + 1 == args.steps:
            v = evaluate(model, val_sets, device, amp)
            rec = dict(step=step + 1, loss=v["loss"], time=time.time() - t0)
            if not lm:
                rec.update(acc=v["acc"], seq_acc=v["seq_acc"], length=cur_len)
                rec["long_acc"] = evaluate(model, long_sets, device, amp)["acc"]
                if cur_len < args.seq_len:  # curriculum: master the current length, then double it
                    cur_acc = evaluate(model, [(x[:, :cur_len], y[:, :cur_len]) for x, y in val_sets],
                                       device, amp)["acc"]
                    if cur_acc >= 0.99:
                        cur_len = min(args.seq_len, 2 * cur_len)
                        hist["cur_len"] = cur_len
            hist["val"].append(rec)
            if v["loss"] < best:
                best = v["loss"]
                save(best_path, step + 1)
            save(ckpt_path, step + 1)
            msg = f"val {v['loss']:.4f}" + (f" acc {v['acc']:.3f} (4x len {rec['long_acc']:.3f}) train len {cur_len}" if not lm else
                                            f" ({v['loss'] / math.log(2):.3f} bits/char)")
            if hasattr(bar, "write"):
                bar.write(f"[step {step + 1}] train {loss.item():.4f}  {msg}  {model.solve_summary()}  "
                          f"{tokens / (time.time() - t0):.0f} tok/s")
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        if args.time_limit and time.time() - t0 > 60 * args.time_limit:
            print(f"[train] time limit of {args.time_limit} min reached at step {step + 1}")
            break
    if hasattr(bar, "close"):
        bar.close()
    elapsed = time.time() - t0

    # ---- results: curve, samples, metrics ----
    title = f"{what}: {args.rnn}, hidden {args.hidden} x {args.layers} layers"
    plot_curves(hist, os.path.join(args.out, "loss_curve.png"), title)
    gen = torch.Generator().manual_seed(args.seed)
    lines = []
    if lm:
        model.eval()
        prompt = task.encode(args.prompt) or [0]
        ids = model.generate(torch.tensor([prompt], device=device), args.sample_len, gen=gen)[0].tolist()
        lines.append(f"--- sampled text (prompt {args.prompt!r}, temperature 0.8) ---")
        lines.append(task.decode(prompt) + task.decode(ids))
    else:
        x, y = task.fixed_set(1, 2 * args.seq_len, seed=999)
        with torch.no_grad():
            pred = model.eval()(x.to(device))[0].argmax(-1).cpu()
        lines.append(f"--- a sequence of length {x.shape[1]} (2x the training length) ---")
        for name, row in (("input ", x[0]), ("target", y[0]), ("model ", pred[0])):
            lines.append(f"{name} " + "".join(str(int(v)) for v in row[:96]) + " ...")
        lines.append(f"errors: {int((pred[0] != y[0]).sum())} of {x.shape[1]} positions")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(args.out, "samples.txt"), "w") as f:
        f.write(text + "\n")
    newton = newton_check(model, (long_sets[0][0] if long_sets else val_sets[0][0]).to(device), amp)
    if newton:
        print(newton["text"])
        lines.append(newton["text"])
        with open(os.path.join(args.out, "samples.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    final = hist["val"][-1] if hist["val"] else {}
    summary = dict(task=what, rnn=args.rnn, steps=step + 1, seconds=round(elapsed, 1),
                   tokens_per_second=round(tokens / max(elapsed, 1e-9)), params=n_params,
                   device=str(device), final_val=final, best_val_loss=best,
                   first_train_loss=hist["train"][0]["loss"] if hist["train"] else None,
                   newton={k: v for k, v in (newton or {}).items() if k != "text"})
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(dict(summary=summary, history=hist, args=vars(args)), f, indent=1)
    print(f"[train] done: {step + 1} steps in {elapsed / 60:.1f} min, "
          f"{summary['tokens_per_second']} tokens/s; final validation {json.dumps(final)}")
    print(f"[train] wrote {args.out}/{{checkpoint.pt,best.pt,loss_curve.png,samples.txt,metrics.json}}")
    return summary


if __name__ == "__main__":
    main()
