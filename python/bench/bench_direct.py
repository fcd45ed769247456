#!/usr/bin/env python3
"""The direct path's size (host/direct.c, issue 14): the bare C call (ctypes, float32, MEAN, loss and
gradient) on a context with the direct path on for every size it can take (CLXENT_DIRECT_MAX=16777216)
and on one with it off (0), interleaved, order alternating per round, medians of the per-call time.
Where the two cross is the tuning table's direct_max (host/tuning.c).

    CLXENT_LIBRARY=$PWD/build/libclxent.so PYTHONPATH=$PWD/python venv/bin/python python/bench/bench_direct.py
"""
import argparse
import ctypes
import os
import statistics
import time

import numpy as np

import clxent

SHAPES = ["1x10", "64x10", "1x1000", "4x1000", "8x1000", "256x32", "1024x10", "16x1000", "64x1000"]


def context(direct_max, device):
    saved = os.environ.get("CLXENT_DIRECT_MAX")
    os.environ["CLXENT_DIRECT_MAX"] = direct_max
    try:
        return clxent.Context(device)
    finally:
        if saved is None:
            del os.environ["CLXENT_DIRECT_MAX"]
        else:
            os.environ["CLXENT_DIRECT_MAX"] = saved


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", action="append", help="NxC (repeatable)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--inner", type=int, default=50, help="calls per round")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    ctxs = {"direct": context("16777216", a.device), "kernels": context("0", a.device)}
    real = clxent._lib.clxent_softmax_xent_ex
    print(f"# C call, median µs of {a.rounds} interleaved rounds of {a.inner} calls; load {os.getloadavg()}")
    for shape in a.shape or SHAPES:
        n, c = (int(v) for v in shape.split("x"))
        rng = np.random.default_rng(0)
        z = rng.standard_normal((n, c), dtype=np.float32)
        y = rng.integers(0, c, n).astype(np.int32)
        g, loss = np.empty_like(z), np.empty(1, np.float32)
        opts, ex = clxent._Opts(0, -100, None, 0.0, 0.0, 0.0, None), clxent._Ex(0, None, None)
        times = {k: [] for k in ctxs}
        for r in range(a.rounds):
            for name in (("direct", "kernels") if r % 2 else ("kernels", "direct")):
                args = (ctxs[name]._ctx, n, c, z.ctypes.data, y.ctypes.data, ctypes.byref(opts), ctypes.byref(ex),
                        loss.ctypes.data, g.ctypes.data)
                t = time.perf_counter()
                for _ in range(a.inner):
                    real(*args)
                times[name].append((time.perf_counter() - t) / a.inner * 1e6)
        d, k = (statistics.median(times[name]) for name in ("direct", "kernels"))
        print(f"{n}x{c} ({n * c} values): direct {d:8.1f} µs   kernels {k:8.1f} µs")


if __name__ == "__main__":
    main()
