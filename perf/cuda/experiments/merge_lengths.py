#!/usr/bin/env python3
"""How many steps a segment's guessed start needs to agree bitwise with the
true state: the data behind tuning::sequential_burn_in, emulated on the CPU.

ParaGRU in float32 with numpy, on the benchmark's kind of inputs (u uniform in
+-1.5, p in +-0.9, both rounded to bf16), 4096 lanes, T = 2048, the 12
segments the staged launch uses at 8192 lanes. Each segment but the first
steps the B steps before its start from zero (the burn-in), then its guess
and the true trajectory are stepped side by side until they agree to the
last bit (the correction). Reported per lane, and as the maximum over a warp
of 64 lanes (two lanes a thread) and over a block's 12 segments, which is
what the kernel waits for. numpy's exp/tanh are not the GPU's ex2/rcp forms,
so the counts are statistics of the dynamics, not the kernel's exact bits.

Usage: /usr/bin/python3 perf/cuda/experiments/merge_lengths.py
"""
import numpy as np

LANES, T, SEGMENTS, WARP_LANES, MAX_MERGE = 4096, 2048, 12, 64, 200


def to_bf16(x):
    """Rounds float32 values to bf16 (round to nearest even), kept as float32."""
    bits = np.asarray(x, np.float32).view(np.uint32)
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return bits.astype(np.uint32).view(np.float32)


def main():
    rng = np.random.default_rng(0)
    u = to_bf16(rng.uniform(-1.5, 1.5, (T, 3, LANES)))
    p = to_bf16(rng.uniform(-0.9, 0.9, (3, LANES)))
    one = np.float32(1)

    def step(h, t):
        z = one / (one + np.exp(-(p[0] * h + u[t, 0])))
        r = one / (one + np.exp(-(p[1] * h + u[t, 1])))
        cand = np.tanh(p[2] * (h * r) + u[t, 2])
        return (h + z * (cand - h)).astype(np.float32)

    true = np.zeros((T + 1, LANES), np.float32)
    for t in range(T):
        true[t + 1] = step(true[t], t)
    seg = (T + SEGMENTS - 1) // SEGMENTS
    for burn in (0, 16, 32, 48, 64):
        merge = []
        for c in range(1, SEGMENTS):
            t0 = c * seg
            guess = np.zeros(LANES, np.float32)
            for t in range(t0 - burn, t0):
                guess = step(guess, t)
            steps = np.full(LANES, MAX_MERGE)
            for k in range(MAX_MERGE):
                same = guess.view(np.uint32) == true[t0 + k].view(np.uint32)
                steps[(steps == MAX_MERGE) & same] = k
                if (steps < MAX_MERGE).all():
                    break
                guess = step(guess, t0 + k)
            merge.append(steps)
        merge = np.array(merge)  # (segments - 1, lanes)
        warp = merge.reshape(SEGMENTS - 1, LANES // WARP_LANES, WARP_LANES).max(axis=2)
        print(f"burn-in {burn:3d}: lane mean {merge.mean():5.1f} median {np.median(merge):3.0f} "
              f"p99 {np.percentile(merge, 99):3.0f} max {merge.max():3d} | warp of {WARP_LANES} max: "
              f"mean {warp.mean():5.1f} max {warp.max():3d} | block of {SEGMENTS} segments: "
              f"mean {warp.max(axis=0).mean():5.1f}")


if __name__ == "__main__":
    main()
