#!/usr/bin/env python3
"""Mode::automatic's data: sequential time / chunked-Newton time for every
(cell, dtype, lanes = 8 * H, T) of a `bench_cuda --tune --json FILE` run.
Ratios > 1 mean chunked Newton is faster. Usage: tune_table.py FILE.json"""
import json
import sys
from collections import defaultdict


def main(path: str) -> None:
    with open(path) as f:
        data = json.load(f)
    ms = defaultdict(dict)
    for r in data["rows"]:
        if r["pass"] != "fwd":
            continue
        key = (r["cell"], r["dtype"], 8 * r["H"], r["T"])
        ms[key][r["mode"]] = r["ms"]
    groups = sorted({(c, d) for c, d, _, _ in ms})
    lanes = sorted({l for _, _, l, _ in ms})
    steps = sorted({t for _, _, _, t in ms})
    print(f"device: {data['device']}; copy bandwidth {data['copy_gbs']} GB/s")
    print("sequential ms / chunked-Newton ms (> 1: chunked faster)")
    for c, d in groups:
        print(f"\n{c} {d}: lanes \\ T " + " ".join(f"{t:>7}" for t in steps))
        for l in lanes:
            cells = []
            for t in steps:
                m = ms.get((c, d, l, t), {})
                if "sequential" in m and "newton_chunked" in m:
                    cells.append(f"{m['sequential'] / m['newton_chunked']:7.2f}")
                else:
                    cells.append(f"{'-':>7}")
            print(f"{l:>20} " + " ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1])
