"""PyTorch baselines for perf/cuda (issue 3): cuDNN nn.GRU / nn.LSTM of the
same width and a plain PyTorch sequential ParaGRU loop, B = 8, bf16 and fp32,
forward and forward+backward, CUDA-event timed on a briefly held stream
(see median_ms), median of reps.

cuDNN's time includes its input projection (x W^T, a GEMM FlashRNN leaves
outside the recurrence) and the dense H x H recurrent matmuls the diagonal
cells do not have: it is the alternative a user has, not the same arithmetic.

Usage: python3 bench_torch.py [--quick] [--json FILE] [--budget-s S]
"""
import argparse
import json
import time

import torch


# Before each timed call the stream spins ~100 us (2e5 cycles at the H200's
# ~2 GHz) so that the start event waits for the call's work to be queued, as
# bench_cuda's hold_kernel does: host-side enqueueing shorter than that is not
# timed, for cuDNN and FlashRNN alike; the Python loop's longer enqueueing is.
HOLD_CYCLES = 200_000


def median_ms(fn, warm=1, reps=5):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(HOLD_CYCLES)  # as bench_cuda: a is recorded once fn's work is queued
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def para_gru_loop(u, a):
    # u: (B, T, 3H); a: (3, H). The plain PyTorch way: one step after another.
    B, T, _ = u.shape
    H = a.shape[1]
    h = torch.zeros(B, H, device=u.device, dtype=u.dtype)
    out = []
    uz, ur, uh = u.split(H, dim=2)
    for t in range(T):
        z = torch.sigmoid(a[0] * h + uz[:, t])
        r = torch.sigmoid(a[1] * h + ur[:, t])
        hc = torch.tanh(a[2] * (h * r) + uh[:, t])
        h = z * hc + (1 - z) * h
        out.append(h)
    return torch.stack(out, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--budget-s", type=float, default=240)
    args = ap.parse_args()
    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(0)
    print(f"device: {name}, torch {torch.__version__}, cudnn {torch.backends.cudnn.version()}")
    rows = []
    start = time.time()
    B = 8
    Hs = [1024] if args.quick else [256, 1024, 4096]
    Ts = [2048] if args.quick else [512, 2048, 8192, 65536]
    for H in Hs:
        for T in Ts:
            for dt_name, dt in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
                for kind in ("GRU", "LSTM"):
                    if time.time() - start > args.budget_s:
                        print(f"budget reached: skipping {kind} {dt_name} H={H} T={T}")
                        continue
                    # Estimated cuDNN time ~ T * (one H x gH matmul of batch 8): skip the hopeless.
                    if H * T > 4096 * 8192:
                        print(f"cuDNN {kind} {dt_name} H={H} T={T}: skipped (estimated > 10 s)")
                        continue
                    try:
                        mod = (torch.nn.GRU if kind == "GRU" else torch.nn.LSTM)(H, H, batch_first=True).to(dev, dt)
                        x = torch.randn(B, T, H, device=dev, dtype=dt, requires_grad=True)
                        reps = 3 if H * T >= 4096 * 2048 else 5
                        with torch.no_grad():
                            f = median_ms(lambda: mod(x), reps=reps)
                        g = torch.randn(B, T, H, device=dev, dtype=dt)

                        def fb():
                            y, _ = mod(x)
                            y.backward(g)

                        fbm = median_ms(fb, reps=reps)
                        for p_, ms in (("fwd", f), ("fwd+bwd", fbm)):
                            r = dict(impl=f"cudnn_{kind}", cell="ParaGRU" if kind == "GRU" else "ParaLSTM",
                                     dtype=dt_name, B=B, H=H, T=T, pass_=p_, ms=ms)
                            rows.append(r)
                            print(f"cuDNN {kind:4s} {dt_name} H={H:5d} T={T:6d} {p_:8s} {ms:10.3f} ms", flush=True)
                        del mod, x, g
                        torch.cuda.empty_cache()
                    except RuntimeError as e:  # out of memory and friends
                        print(f"cuDNN {kind} {dt_name} H={H} T={T}: failed: {str(e).splitlines()[0]}")
                        torch.cuda.empty_cache()
            # Plain PyTorch sequential ParaGRU loop: a few thousand launches per
            # 1000 steps, so only the shorter sequences.
            if T <= 2048 and time.time() - start < args.budget_s:
                for dt_name, dt in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
                    u = torch.randn(B, T, 3 * H, device=dev, dtype=dt, requires_grad=True)
                    a = (0.5 * torch.randn(3, H, device=dev, dtype=dt)).requires_grad_()
                    with torch.no_grad():
                        f = median_ms(lambda: para_gru_loop(u, a), reps=3)
                    g = torch.randn(B, T, H, device=dev, dtype=dt)
                    fbm = median_ms(lambda: para_gru_loop(u, a).backward(g), reps=3)
                    for p_, ms in (("fwd", f), ("fwd+bwd", fbm)):
                        rows.append(dict(impl="torch_loop", cell="ParaGRU", dtype=dt_name, B=B, H=H, T=T,
                                         pass_=p_, ms=ms))
                        print(f"loop ParaGRU {dt_name} H={H:5d} T={T:6d} {p_:8s} {ms:10.3f} ms", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(device=name, rows=rows), fh, indent=1)


if __name__ == "__main__":
    main()
