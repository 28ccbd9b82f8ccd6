#!/usr/bin/python3
"""Turn Google Benchmark JSON from perf/cpu/bench_cpu into markdown tables.

    perf/report.py bench_cpu.json                 # tables per (pass, cell) on stdout
    perf/report.py bench_cpu.json --long          # one row per benchmark, all counters
    perf/report.py bench_cpu.json --plot out.png  # speed-up plot (needs matplotlib)
    perf/report.py bench_cpu.json --trim out.json # keep only the rows used (to commit)

Benchmark names are <pass>/<cell>/<mode>/lanes:<n>/T:<n>/threads:<n>[/real_time].
Speed-up is sequential time / mode time for the same pass, cell, shape and
thread count (> 1 means the mode is faster than stepping). Work is the mode's
process CPU time (all threads) / sequential's: how much more computing it does. With
--benchmark_repetitions the "min" aggregate is used (the least disturbed
repetition on a shared machine), else the median; rates are recomputed from
that time. Standard library only; matplotlib is needed for --plot alone.
"""
import argparse
import json
import sys
from collections import OrderedDict

MODES = ("sequential", "newton", "newton_chunked")
PASS_TITLE = {"fwd": "forward", "fwdbwd": "forward + backward"}


def parse_name(name):
    parts = name.split("/")
    if len(parts) < 6 or parts[0] not in PASS_TITLE:
        return None
    fields = {"pass": parts[0], "cell": parts[1], "mode": parts[2]}
    for part in parts[3:]:
        if ":" in part:
            key, value = part.split(":", 1)
            fields[key] = int(value)
    if not {"lanes", "T", "threads"} <= fields.keys():
        return None
    return fields


def to_ms(value, unit):
    return value * {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def load(path, kept=None):
    with open(path) as f:
        data = json.load(f)
    runs = {}
    aggregates = {b.get("aggregate_name") for b in data["benchmarks"] if b.get("run_type") == "aggregate"}
    wanted = "min" if "min" in aggregates else "median" if "median" in aggregates else None
    for b in data["benchmarks"]:
        if b.get("error_occurred"):
            print(f"warning: {b['name']}: {b.get('error_message', 'error')}", file=sys.stderr)
            continue
        if wanted and b.get("aggregate_name") != wanted:
            continue
        if not wanted and b.get("run_type", "iteration") != "iteration":
            continue
        fields = parse_name(b.get("run_name", b["name"]))
        if fields is None:
            continue
        fields["ms"] = to_ms(b["real_time"], b.get("time_unit", "ns"))
        fields["cpu_ms"] = to_ms(b["cpu_time"], b.get("time_unit", "ns"))
        fields["iters"] = int(round(b.get("newton_iters", 0)))
        seconds = fields["ms"] / 1e3
        fields["steps_per_s"] = fields["lanes"] * fields["T"] / seconds
        fields["bytes_per_s"] = b["io_MB"] * 1e6 / seconds if "io_MB" in b else b.get("bytes_per_second", 0.0)
        fields["max_diff"] = b.get("max_diff", float("nan"))
        key = (fields["pass"], fields["cell"], fields["lanes"], fields["T"], fields["threads"], fields["mode"])
        runs[key] = fields
        if kept is not None:
            kept.append(b)
    return data.get("context", {}), runs


def speedup(runs, key, field="ms"):
    seq = runs.get(key[:5] + ("sequential",))
    run = runs.get(key)
    if not seq or not run or not run[field]:
        return None
    return seq[field] / run[field]


def work_ratio(runs, key):
    """Process CPU time of the mode over that of sequential: the extra work."""
    s = speedup(runs, key, "cpu_ms")
    return 1 / s if s else None


def fmt_ms(ms):
    return f"{ms:.3g}" if ms < 10 else f"{ms:.0f}"


def wide_tables(runs):
    out = []
    groups = OrderedDict()
    for key in sorted(runs, key=lambda k: (k[0] != "fwd", k[1], k[2], k[3], k[4])):
        groups.setdefault(key[:2], OrderedDict())[key[2:5]] = True
    for (pas, cell), shapes in groups.items():
        out.append(f"#### {PASS_TITLE[pas]}, {cell} (fp32)\n")
        out.append("| lanes | T | threads | sequential ms | newton ms (iters) | newton speed-up "
                   "| chunked ms (iters) | chunked speed-up | newton / chunked work | sequential Msteps/s "
                   "| sequential GB/s |")
        out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for lanes, T, threads in shapes:
            base = (pas, cell, lanes, T, threads)
            seq = runs.get(base + ("sequential",))
            cells = [str(lanes), str(T), str(threads), fmt_ms(seq["ms"]) if seq else "–"]
            for mode in MODES[1:]:
                run = runs.get(base + (mode,))
                s = speedup(runs, base + (mode,))
                cells.append(f"{fmt_ms(run['ms'])} ({run['iters']})" if run else "–")
                cells.append(f"{s:.2f}×" if s else "–")
            works = [work_ratio(runs, base + (mode,)) for mode in MODES[1:]]
            cells.append(" / ".join(f"{w:.1f}×" if w else "–" for w in works))
            cells.append(f"{seq['steps_per_s'] / 1e6:.1f}" if seq else "–")
            cells.append(f"{seq['bytes_per_s'] / 1e9:.2f}" if seq else "–")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def long_table(runs):
    out = ["| pass | cell | mode | lanes | T | threads | ms | CPU ms | Newton iters | speed-up vs sequential "
           "| work vs sequential | Msteps/s | GB/s (unavoidable I/O) | max diff vs stepping |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key in sorted(runs, key=lambda k: (k[0] != "fwd", k[1], k[2], k[3], k[4], MODES.index(k[5]))):
        r = runs[key]
        s, w = speedup(runs, key), work_ratio(runs, key)
        out.append(f"| {r['pass']} | {r['cell']} | {r['mode']} | {r['lanes']} | {r['T']} | {r['threads']} "
                   f"| {fmt_ms(r['ms'])} | {fmt_ms(r['cpu_ms'])} | {r['iters']} | {f'{s:.2f}×' if s else '–'} "
                   f"| {f'{w:.1f}×' if w else '–'} "
                   f"| {r['steps_per_s'] / 1e6:.1f} | {r['bytes_per_s'] / 1e9:.2f} | {r['max_diff']:.1e} |")
    return "\n".join(out) + "\n"


def plot(runs, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    passes = sorted({k[0] for k in runs}, key=lambda p: p != "fwd")
    cells = sorted({k[1] for k in runs})
    fig, axes = plt.subplots(len(passes), len(cells), figsize=(7 * len(cells), 5 * len(passes)), squeeze=False)
    for i, pas in enumerate(passes):
        for j, cell in enumerate(cells):
            ax = axes[i][j]
            shapes = sorted({k[2:5] for k in runs if k[0] == pas and k[1] == cell})
            labels = [f"{l}x{T} {t}t" for l, T, t in shapes]
            for n, mode in enumerate(MODES[1:]):
                ys = [speedup(runs, (pas, cell) + s + (mode,)) or 0 for s in shapes]
                ax.bar([x + 0.4 * n for x in range(len(shapes))], ys, width=0.4, label=mode)
            ax.axhline(1.0, color="k", lw=0.8)
            ax.set_xticks([x + 0.2 for x in range(len(shapes))])
            ax.set_xticklabels(labels, fontsize=7, rotation=90)
            ax.set_title(f"{PASS_TITLE[pas]}, {cell}: speed-up vs sequential")
            ax.set_xlabel("lanes x T, threads")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", help="--benchmark_out file of flashrnn_bench_cpu")
    ap.add_argument("--long", action="store_true", help="one row per benchmark with every counter")
    ap.add_argument("--plot", metavar="PNG", help="also write a speed-up plot (matplotlib)")
    ap.add_argument("--trim", metavar="JSON", help="also write the JSON reduced to the rows used")
    args = ap.parse_args()
    kept = []
    context, runs = load(args.json, kept)
    if args.trim:
        with open(args.trim, "w") as f:
            json.dump({"context": context, "benchmarks": kept}, f, indent=1)
    if not runs:
        sys.exit(f"{args.json}: no flashrnn benchmark results")
    print(long_table(runs) if args.long else wide_tables(runs))
    if args.plot:
        plot(runs, args.plot)


if __name__ == "__main__":
    main()
