#!/usr/bin/env python3
"""PyTorch's cross_entropy forward+backward on the shapes of `clxent bench`, for the side-by-side
table in docs/PERFORMANCE.md. Run on the GPU machine next to `clxent bench --device gpu --csv`:

    python3 bench/torch_xent.py [--shape NxC ...] [--repeat 20] [--compile]

Reports the median time after warm-up and the effective bandwidth with clxent's byte count
(logits read once + gradient written once), plus the device's copy bandwidth (a device-to-device
tensor copy of the logits) measured in the same run.
"""
import argparse
import statistics

import torch
import torch.nn.functional as F


def median_ms(fn, repeat, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", action="append", default=[])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = ap.parse_args()
    shapes = args.shape or ["8192x32000", "4096x128256", "65536x1000", "1048576x10", "1048576x2"]
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__}; median of {args.repeat}")
    print("n,c,copy_GBps,torch_ms,torch_GBps,torch_pct_copy" + (",compiled_ms,compiled_GBps" if args.compile else ""))
    for s in shapes:
        n, c = (int(v) for v in s.lower().split("x"))
        z = torch.randn(n, c, device="cuda", dtype=torch.float32)
        y = torch.randint(0, c, (n,), device="cuda")
        nbytes = 2 * n * c * 4
        dst = torch.empty_like(z)
        copy_ms = median_ms(lambda: dst.copy_(z), args.repeat)
        copy_bw = nbytes / copy_ms / 1e6

        def step(loss_fn=F.cross_entropy):
            zz = z.detach().requires_grad_(True)
            loss_fn(zz, y).backward()

        t = median_ms(step, args.repeat)
        row = f"{n},{c},{copy_bw:.1f},{t:.3f},{nbytes / t / 1e6:.1f},{100 * nbytes / t / 1e6 / copy_bw:.1f}"
        if args.compile:
            compiled = torch.compile(F.cross_entropy)
            tc = median_ms(lambda: step(compiled), args.repeat)
            row += f",{tc:.3f},{nbytes / tc / 1e6:.1f}"
        print(row, flush=True)
        del z, y, dst


if __name__ == "__main__":
    main()
