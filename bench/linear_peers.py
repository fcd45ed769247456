"""clxent's fused linear + cross-entropy against its peers on the CPU (issue 17), in one process,
interleaved round by round (the order rotated each round), medians:

  clxent loss      Context.linear_xent, loss only (one product: 2ndv flops)
  clxent all       Context.linear_xent with grad_hidden, grad_weight, grad_bias (8ndv flops counted:
                   the logits twice, G·W, Gᵀ·H; fewer done where blocks of logits are kept from
                   the forward pass: 6ndv at 2048 × 1024 × 32000, where every block is kept)
  numpy matmul     hidden @ weight.T, the logits' product alone (2ndv): NumPy's BLAS throughput
  torch eager      F.linear + F.cross_entropy forward and backward (float32; 6ndv in its three
                   products), which materialises n·v logits and their gradient

    CLXENT_LIBRARY=$PWD/build/libclxent.so PYTHONPATH=python /work/peers-venv/bin/python \
        bench/linear_peers.py [--rounds R] [NxDxV ...]

Prints a Markdown table; the BLAS numpy uses is named in the header (np.show_config). Every
library uses the machine's cores (PoCL's threads, OpenBLAS's, torch's intra-op threads).
"""
import argparse
import io
import os
import statistics
import sys
import time
from contextlib import redirect_stdout

import numpy as np

import clxent

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the table then leaves torch out
    torch = None


def blas_name():
    buf = io.StringIO()
    try:
        with redirect_stdout(buf):
            np.show_config()
    except Exception:
        return "unknown"
    text = buf.getvalue().lower()
    for name in ("scipy-openblas", "openblas", "mkl", "blis", "accelerate", "netlib", "blas"):
        if name in text:
            return name
    return "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("shapes", nargs="*", default=["512x512x8000", "2048x1024x32000"])
    args = ap.parse_args()
    print(f"numpy {np.__version__} ({blas_name()}), torch {torch.__version__ if torch else 'absent'} "
          f"({torch.get_num_threads() if torch else 0} threads); {args.rounds} rounds, medians\n")
    print("| n × d × v | clxent loss s | clxent all s | numpy matmul s | torch eager fwd+bwd s | clxent loss GFLOP/s "
          "| clxent all GFLOP/s | numpy GFLOP/s | clxent loss / numpy throughput | clxent all / torch time "
          "| all / torch, each round | clxent scratch (with gradients) / n·v·4 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    with clxent.Context() as ctx:
        for shape in args.shapes:
            n, d, v = (int(x) for x in shape.split("x"))
            r = np.random.default_rng(0)
            h = r.uniform(-1, 1, (n, d)).astype(np.float32)
            w = (r.uniform(-1, 1, (v, d)) * 0.05).astype(np.float32)
            b = (r.uniform(-1, 1, v) * 0.1).astype(np.float32)
            y = r.integers(0, v, n).astype(np.int32)

            def run_loss():
                ctx.linear_xent(h, w, y, b, grad_hidden=False, grad_weight=False, grad_bias=False)

            def run_all():
                ctx.linear_xent(h, w, y, b)

            def run_numpy():
                h @ w.T

            cases = {"loss": run_loss, "all": run_all, "numpy": run_numpy}
            if torch is not None:
                th, tw, tb = (torch.from_numpy(a).clone().requires_grad_() for a in (h, w, b))
                ty = torch.from_numpy(y.astype(np.int64))

                def run_torch():
                    th.grad = tw.grad = tb.grad = None
                    F.cross_entropy(F.linear(th, tw, tb), ty).backward()

                cases["torch"] = run_torch
            times = {k: [] for k in cases}
            for f in cases.values():  # warm-up
                f()
            keys = list(cases)
            for rnd in range(args.rounds):
                for k in keys[rnd % len(keys):] + keys[:rnd % len(keys)]:
                    t0 = time.perf_counter()
                    cases[k]()
                    times[k].append(time.perf_counter() - t0)
            med = {k: statistics.median(t) for k, t in times.items()}
            ndv = float(n) * d * v
            info = ctx_block(ctx)
            rows, classes = min(info[0], n), min(info[1], v)
            scratch = scratch_floats(n, d, v, rows, classes, info[2], not os.environ.get("CLXENT_LINEAR_ROWS")) * 4
            tt = med.get("torch", float("nan"))
            rounds = " ".join(f"{a / t:.2f}" for a, t in zip(times["all"], times.get("torch", []))) or "—"
            print(f"| {n} × {d} × {v} | {med['loss']:.3f} | {med['all']:.3f} | {med['numpy']:.3f} | {tt:.3f} "
                  f"| {2 * ndv / med['loss'] / 1e9:.1f} | {8 * ndv / med['all'] / 1e9:.1f} "
                  f"| {2 * ndv / med['numpy'] / 1e9:.1f} | {med['numpy'] / med['loss']:.2f} "
                  f"| {med['all'] / tt:.2f} | {rounds} | {100 * scratch / (n * v * 4):.2f}% |", flush=True)
    return 0


def scratch_floats(n, d, v, rows, classes, vec, table_rows):
    """The call's device scratch with the gradients, in floats, as host/linear.c allocates it
    (include/clxent.h): the block of logits and the blocks kept for the backward (kept_blocks), the
    state, the row losses, the packs; the rows per block fewer than the table's where a row chunk
    then keeps every block (rows_per_block), unless CLXENT_LINEAR_ROWS set them."""
    chunks, ldz = -(-v // classes), -(-classes // 16) * 16 + 16
    dp = -(-d // (2 * vec)) * 2 * vec

    def plan(r):
        rp = -(-r // (2 * vec)) * 2 * vec
        rest = r * ldz + r * 8 + n + rp * d + classes * dp + r * dp
        room = (0.045 * n * v - rest) / (r * ldz) - 1.0
        return rest, 0 if room < 0 else min(chunks, int(room))

    R, (rest, kept) = rows, plan(rows)
    r = rows
    while table_rows and r >= 64:
        rr, k = plan(r)
        if k == chunks:
            R, rest, kept = r, rr, k
            break
        r = (r - 1) // 16 * 16
    slots = kept + 1 if kept < chunks else chunks
    return rest + (slots - 1) * R * ldz


def ctx_block(ctx):
    """The context's block of logits (clxent_info.linear_rows, linear_classes), through ctypes."""
    import ctypes

    class Info(ctypes.Structure):
        _fields_ = [("size", ctypes.c_size_t), ("is_cpu", ctypes.c_int), ("variant", ctypes.c_int),
                    ("vector_width", ctypes.c_uint), ("group_size", ctypes.c_size_t),
                    ("row_threads", ctypes.c_size_t), ("zero_copy", ctypes.c_int),
                    ("program_from_cache", ctypes.c_int), ("block_bytes", ctypes.c_uint64),
                    ("max_alloc", ctypes.c_uint64), ("global_mem", ctypes.c_uint64), ("own_math", ctypes.c_int),
                    ("linear_rows", ctypes.c_size_t), ("linear_classes", ctypes.c_size_t)]

    info = Info()
    info.size = ctypes.sizeof(Info)
    fn = clxent._lib.clxent_get_info
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(Info)], ctypes.c_int
    if fn(ctx._ctx, 0, ctypes.byref(info)) != 0:
        raise RuntimeError("clxent_get_info failed")
    return info.linear_rows, info.linear_classes, info.vector_width


if __name__ == "__main__":
    sys.exit(main())
