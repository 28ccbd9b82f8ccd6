"""Markdown table for perf/README.md from bench_cuda.json (+ bench_torch.json).

Usage: python3 make_table.py bench_cuda.json [bench_torch.json]
"""
import json
import sys
from collections import defaultdict


def main():
    ours = json.load(open(sys.argv[1]))
    torch = json.load(open(sys.argv[2])) if len(sys.argv) > 2 else {"rows": []}
    peak = ours["copy_gbs"]
    rows = defaultdict(dict)
    for r in ours["rows"]:
        key = (r["cell"], r["dtype"], r["H"], r["T"], r["pass"])
        rows[key][r["mode"]] = r
    ext = {}
    for r in torch["rows"]:
        ext[(r["impl"], r["cell"], r["dtype"], r["H"], r["T"], r["pass_"])] = r["ms"]
    print(f"Card: {ours['device']}; measured copy bandwidth {peak:.0f} GB/s. "
          "ms = median; it = Newton updates; GB/s and % are the unavoidable I/O of the best FlashRNN row "
          "over the copy bandwidth; seq/best = sequential kernel time over the best kernel's; "
          "cuDNN/best and loop/best likewise (— = not run).\n")
    print("| cell | dtype | H | T | pass | chunked ms (it) | per-step ms (it) | sequential ms | auto | best GB/s (% copy) | seq/best | cuDNN ms | cuDNN/best | loop/best |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key in sorted(rows, key=lambda k: (k[0], k[1], k[2], k[3], k[4])):
        cell, dt, H, T, p = key
        m = rows[key]
        if p == "bwd":
            r = m["adjoint"]
            print(f"| {cell} | {dt} | {H} | {T} | bwd | — | — | — | adjoint {r['ms']:.3f} | {r['gbs']:.0f} ({100*r['fraction_of_copy']:.0f}%) | — | — | — | — |")
            continue
        cands = [v for k, v in m.items() if not k.startswith("auto")]
        best = min(cands, key=lambda v: v["ms"])
        def cell_of(name):
            v = m.get(name)
            if not v:
                return "—"
            it = f" ({v['iterations']})" if name != "sequential" else ""
            return f"{v['ms']:.3f}{it}"
        auto = next((f"{k[5:]} {v['ms']:.3f}" for k, v in m.items() if k.startswith("auto")), "—")
        seq = m.get("sequential")
        ratio = f"{seq['ms'] / best['ms']:.2f}" if seq else "—"
        cd = ext.get(("cudnn_" + ("GRU" if cell == "ParaGRU" else "LSTM"), cell, dt, H, T, p))
        lp = ext.get(("torch_loop", cell, dt, H, T, p))
        print(f"| {cell} | {dt} | {H} | {T} | {p} | {cell_of('newton_chunked')} | {cell_of('newton')} | "
              f"{cell_of('sequential')} | {auto} | {best['gbs']:.0f} ({100*best['fraction_of_copy']:.0f}%) | {ratio} | "
              f"{'%.2f' % cd if cd else '—'} | {'%.0f' % (cd / best['ms']) if cd else '—'} | "
              f"{'%.0f' % (lp / best['ms']) if lp else '—'} |")


if __name__ == "__main__":
    main()
