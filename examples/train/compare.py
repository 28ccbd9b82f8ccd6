#!/usr/bin/env python3
"""Overlay the validation curves of several train.py runs (their --out
directories or metrics.json files) in one PNG and print a step-by-step table,
e.g. ParaGRU vs torch.nn.GRU of the same width:

    python3 examples/train/compare.py build/lm-paragru build/lm-gru -o build/lm-compare.png
"""
import argparse
import json
import os


def load(path):
    f = os.path.join(path, "metrics.json") if os.path.isdir(path) else path
    with open(f) as fh:
        d = json.load(fh)
    return d["summary"], d["history"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run directories or metrics.json files")
    ap.add_argument("-o", "--output", default="compare.png")
    args = ap.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    table = {}
    for path in args.runs:
        summary, hist = load(path)
        label = f"{summary['rnn']} ({summary['params'] / 1e3:.0f}k params, {summary['device']})"
        steps = [v["step"] for v in hist["val"]]
        losses = [v["loss"] for v in hist["val"]]
        ax.plot(steps, losses, "o-", ms=3, label=label)
        for s, l in zip(steps, losses):
            table.setdefault(s, {})[label] = l
        print(f"{label}: {summary['steps']} steps in {summary['seconds']:.0f} s, "
              f"{summary['tokens_per_second']} tokens/s, best val loss {summary['best_val_loss']:.4f}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("validation cross-entropy (nats / token)")
    ax.set_title(summary["task"], fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    labels = sorted({k for row in table.values() for k in row})
    print("step  " + "  ".join(f"{l[:28]:>28}" for l in labels))
    for s in sorted(table):
        print(f"{s:>4}  " + "  ".join(f"{table[s].get(l, float('nan')):>28.4f}" for l in labels))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
