#!/usr/bin/env python3
"""Kokkos/native time ratios from a flashrnn_bench_kokkos JSON file.

    python3 perf/kokkos/ratio.py bench_kokkos.json  > table.md

Prints a markdown table: one row per (pass, cell, mode, lanes, T) with the
native and Kokkos times (ms) and kokkos/native (< 1: Kokkos faster), by wall
time and by CPU time (the benchmark is single-threaded where Kokkos is Serial;
on a shared machine CPU time is the steadier of the two), then geometric means
and the worst ratios.
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
        times.setdefault(key, {})[backend] = (b["real_time"] * scale, b["cpu_time"] * scale)
    print("| benchmark | native ms (wall / cpu) | kokkos ms (wall / cpu) | kokkos/native wall | kokkos/native cpu |")
    print("|---|---:|---:|---:|---:|")
    wall, cpu = [], []
    for key, t in times.items():
        if "native" in t and "kokkos" in t:
            (nw, nc), (kw, kc) = t["native"], t["kokkos"]
            wall.append((kw / nw, key))
            cpu.append((kc / nc, key))
            print(f"| {key} | {nw:.2f} / {nc:.2f} | {kw:.2f} / {kc:.2f} | {kw / nw:.2f} | {kc / nc:.2f} |")
    for label, ratios in (("wall", wall), ("cpu", cpu)):
        if ratios:
            gm = math.exp(sum(math.log(r) for r, _ in ratios) / len(ratios))
            worst = max(ratios)
            print(f"\n{label}: geometric mean kokkos/native = {gm:.2f} over {len(ratios)} benchmarks; "
                  f"worst {worst[0]:.2f} ({worst[1]})")


if __name__ == "__main__":
    main(sys.argv[1])
