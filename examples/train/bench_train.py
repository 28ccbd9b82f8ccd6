#!/usr/bin/env python3
"""Training throughput (tokens/s) of a 2-layer recurrent stack with FlashRNN
layers vs torch.nn.GRU / nn.LSTM (cuDNN on a GPU), in one run on one device.
The issue-4 benchmark is the default on a GPU: d = 1024, T = 2048, bf16.

    PYTHONPATH=<build>/python python3 examples/train/bench_train.py --json out.json
    python3 examples/train/bench_train.py --device cpu --d 64 --T 256 --batch 8   # smoke test

Each step: forward, mean-square loss, backward, AdamW step; timed between CUDA
synchronisations after warm-up. Reports ms/step and tokens/s per model.
"""
import argparse
import contextlib
import json
import time

import torch
from torch import nn

import flashrnn

MODELS = ("paragru", "paralstm", "torch-gru", "torch-lstm")


def build(kind, d, layers, device):
    kw = dict(num_layers=layers, batch_first=True, device=device)
    if kind == "paragru":
        return flashrnn.ParaGRU(d, d, **kw)
    if kind == "paralstm":
        return flashrnn.ParaLSTM(d, d, **kw)
    if kind == "torch-gru":
        return nn.GRU(d, d, **kw)
    return nn.LSTM(d, d, **kw)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--d", type=int, default=None, help="width (default 1024 on GPU, 128 on CPU)")
    ap.add_argument("--T", type=int, default=None, help="sequence length (default 2048 on GPU, 512 on CPU)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dtype", choices=("bfloat16", "float32"), default=None,
                    help="autocast dtype on CUDA (default bfloat16); the CPU runs float32")
    ap.add_argument("--mode", default="auto", help="FlashRNN solver mode")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    dev = torch.device(args.device)
    gpu = dev.type == "cuda"
    d = args.d or (1024 if gpu else 128)
    T = args.T or (2048 if gpu else 512)
    dtype = getattr(torch, args.dtype or ("bfloat16" if gpu else "float32"))
    if not gpu:
        dtype = torch.float32
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    results = []
    x = torch.randn(args.batch, T, d, device=dev)
    for kind in args.models.split(","):
        torch.manual_seed(0)
        m = build(kind, d, args.layers, dev)
        if kind.startswith("para"):
            m.options = flashrnn.SolverOptions(mode=args.mode)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4)

        def step():
            amp = (torch.autocast("cuda", dtype=dtype) if gpu and dtype != torch.float32
                   else contextlib.nullcontext())
            with amp:
                y, _ = m(x)
            loss = y.float().pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(args.warmup):
            step()
        sync()
        t = time.perf_counter()
        for _ in range(args.iters):
            step()
        sync()
        ms = (time.perf_counter() - t) / args.iters * 1e3
        rec = dict(model=kind, ms_per_step=ms, tokens_per_s=args.batch * T / ms * 1e3, d=d, T=T,
                   batch=args.batch, layers=args.layers, dtype=str(dtype).replace("torch.", ""),
                   device=torch.cuda.get_device_name(dev) if gpu else "cpu")
        if kind.startswith("para"):
            rec["report"] = [r.__dict__ for r in m.last_report]
        results.append(rec)
        print(f"{kind:>11}: {ms:9.1f} ms/step  {rec['tokens_per_s']:12.0f} tokens/s"
              + (f"  ({', '.join(f'{r.mode}/{r.iterations}it' for r in m.last_report)})" if kind.startswith('para') else ""))
        del m, opt
        if gpu:
            torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
