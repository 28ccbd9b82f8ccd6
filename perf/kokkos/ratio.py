#!/usr/bin/env python3
"""Kokkos/native time ratios from a flashrnn_bench_kokkos JSON file.

    python3 perf/kokkos/ratio.py bench_kokkos.json  > table.md

Prints a markdown table: one row per (pass, cell, mode, lanes, T) with the
native and Kokkos times (ms, real time) and kokkos/native (< 1: Kokkos faster),
then the geometric mean and the worst ratio.
"""
import json
import math
import sys


def main(path):
    data = json.load(open(path))
    times = {}
    for b in data["benchmarks"]:
        if b.get("error_occurred"):
            print(f"ERROR in {b['name']}: {b.get('error_message')}", file=sys.stderr)
            continue
        name = b["name"].removesuffix("/real_time")
        key, backend = name.rsplit("/", 1)
        scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b["time_unit"]]
        times.setdefault(key, {})[backend] = b["real_time"] * scale
    print("| benchmark | native ms | kokkos ms | kokkos/native |")
    print("|---|---:|---:|---:|")
    ratios = []
    for key, t in times.items():
        if "native" in t and "kokkos" in t:
            r = t["kokkos"] / t["native"]
            ratios.append((r, key))
            print(f"| {key} | {t['native']:.2f} | {t['kokkos']:.2f} | {r:.2f} |")
    if ratios:
        gm = math.exp(sum(math.log(r) for r, _ in ratios) / len(ratios))
        worst = max(ratios)
        print(f"\ngeometric mean kokkos/native = {gm:.2f} over {len(ratios)} shapes; "
              f"worst {worst[0]:.2f} ({worst[1]})")


if __name__ == "__main__":
    main(sys.argv[1])
