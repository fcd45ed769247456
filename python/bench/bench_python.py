#!/usr/bin/env python3
"""Where the Python binding's time goes (issue 14), for docs/PERFORMANCE.md.

    CLXENT_LIBRARY=$PWD/build/libclxent.so venv/bin/python python/bench/bench_python.py fresh [--shape 4096x32000]
    CLXENT_LIBRARY=$PWD/build/libclxent.so venv/bin/python python/bench/bench_python.py small [--shape 1x10 ...]

fresh: a training loop's `loss, grad = ctx.softmax_xent(z, y)` (the previous step's gradient
dropped when the new one is bound) against the same call in place, and where the binding has
out=, with the caller's own array reused and with a new np.empty_like array per call (what the
default did before the gradient pool), and with a pool that keeps nothing, so that every call
maps and populates a new block (what the first call of a loop costs). One call of each per round, the order reversed
every round, medians over the rounds.

small: one small call, split into the binding's Python side and the C call. "binding" is
ctx.softmax_xent(z, y); "C call" is the ctypes function on the same arguments built once; "Python
side" is the binding with the library function swapped for a C function that does nothing (built
with cc, else a ctypes callback, which costs a little more). "C call with a new gradient array"
is the C call given np.empty_like's array each time: what a couple of microseconds of Python
between two calls add on this machine. Rounds of --inner calls each,
interleaved, medians of the per-call time. "direct path off" is the same binding and C call on a
second context made with CLXENT_DIRECT_MAX=0: the kernels, where the first context's small calls
take the host's direct path (host/direct.c) on a CPU device.
"""
import argparse
import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import clxent

before = None  # --before: another copy of the binding, timed in the same rounds


def load_before(path):
    """The binding's __init__.py at `path` (e.g. from `git show REV:python/clxent/__init__.py`) as a
    module of its own, on the same C library."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("clxent_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def interleaved(fns, rounds, inner=1):
    times = {k: [] for k in fns}
    for r in range(rounds):
        for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            f = fns[k]
            t0 = time.perf_counter()
            for _ in range(inner):
                f()
            times[k].append((time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in times.items()}


def shape_of(text):
    n, c = (int(v) for v in text.lower().split("x"))
    return n, c


def fresh(ctx, ctx_device, shapes, rounds):
    has_out = "out" in clxent.Context.softmax_xent.__code__.co_varnames
    for n, c in shapes:
        rng = np.random.default_rng(0)
        z = rng.standard_normal((n, c), dtype=np.float32)
        y = rng.integers(0, c, n).astype(np.int32)
        work = z.copy()
        held = {}

        def loop_step(key, **kw):
            def step():
                loss, grad = ctx.softmax_xent(z, y, **{k: v() for k, v in kw.items()})[:2]
                held[key] = grad  # the previous step's gradient dies here, as in a training loop
            return step

        fns = {"in place": lambda: ctx.softmax_xent(work, y, in_place=True), "fresh (default)": loop_step("a")}
        if before is not None:
            old = before.Context(ctx_device)

            def old_step():
                loss, grad = old.softmax_xent(z, y)[:2]
                held["c"] = grad
            fns["fresh, --before"] = old_step
        if hasattr(clxent, "_pool"):
            misses = clxent._pool.GradientPool(max_bytes=0)  # keeps nothing: every call maps a new block

            def miss_step():
                pool, clxent._POOL = clxent._POOL, misses
                try:
                    loop_step("d")()
                finally:
                    clxent._POOL = pool
            fns["pool miss each call"] = miss_step
        if has_out:
            mine = np.empty_like(z)
            fns["out= own array"] = lambda: ctx.softmax_xent(z, y, out=mine)
            # what the default did before the pool: a new NumPy array every call
            fns["out= new np.empty"] = loop_step("b", out=lambda: np.empty_like(z))
        for f in fns.values():  # warm-up (fills the pool)
            f()
            f()
        med = interleaved(fns, rounds)
        base = med["in place"]
        print(f"# {n}x{c} float32, {ctx.device_name}, median of {rounds} interleaved rounds")
        for k, v in med.items():
            print(f"{n}x{c}  {k:18s} {v * 1e3:9.1f} ms  {v / base:5.2f}x in place")
        if hasattr(clxent, "gradient_pool"):
            print(f"# {clxent.gradient_pool()}")


def stub_function(like):
    """A C function with `like`'s signature that only zeroes the loss (a ctypes callback without cc),
    and what it is."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        tmp = tempfile.mkdtemp()
        src, lib = os.path.join(tmp, "stub.c"), os.path.join(tmp, "libstub.so")
        with open(src, "w") as f:
            f.write("#include <stddef.h>\nint stub(void *ctx, size_t n, size_t c, const void *x, const void *y,"
                    " const void *o, const void *e, float *loss, void *g) {\n"
                    "  (void)ctx; (void)n; (void)c; (void)x; (void)y; (void)o; (void)e; (void)g;\n"
                    "  if (loss) *loss = 0.f; return 0; }\n")
        if subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", lib, src]).returncode == 0:
            fn = ctypes.CDLL(lib)["stub"]  # a function object of its own, for `like`'s argtypes
            fn.argtypes, fn.restype = like.argtypes, like.restype
            return fn, "C no-op"
    proto = ctypes.CFUNCTYPE(like.restype, *like.argtypes)
    return proto(lambda *args: 0), "ctypes callback no-op (an upper bound)"


def small(ctx, ctx_device, shapes, rounds, inner):
    real = clxent._lib.clxent_softmax_xent_ex
    stub, what = stub_function(real)
    stubs = {clxent: (stub, real)}
    if before is not None:
        stubs[before] = (stub_function(before._lib.clxent_softmax_xent_ex)[0], before._lib.clxent_softmax_xent_ex)

    def stubbed(z, y, module=clxent, context=ctx):
        no_op, lib_fn = stubs[module]
        module._lib.clxent_softmax_xent_ex = no_op
        try:
            return context.softmax_xent(z, y)
        finally:
            module._lib.clxent_softmax_xent_ex = lib_fn

    old = None if before is None else before.Context(ctx_device)
    # the same calls through the kernels: a context with the direct path off (host/direct.c)
    saved = os.environ.get("CLXENT_DIRECT_MAX")
    os.environ["CLXENT_DIRECT_MAX"] = "0"
    try:
        kctx = clxent.Context(ctx_device)
    finally:
        if saved is None:
            del os.environ["CLXENT_DIRECT_MAX"]
        else:
            os.environ["CLXENT_DIRECT_MAX"] = saved

    fns = {}
    for n, c in shapes:
        rng = np.random.default_rng(0)
        z = rng.standard_normal((n, c), dtype=np.float32)
        y = rng.integers(0, c, n).astype(np.int32)
        g, loss = np.empty_like(z), np.empty(1, np.float32)
        opts, ex = clxent._Opts(0, -100, None, 0.0, 0.0, 0.0, None), clxent._Ex(0, None, None)
        args = (ctx._ctx, n, c, z.ctypes.data, y.ctypes.data, ctypes.byref(opts), ctypes.byref(ex),
                loss.ctypes.data, g.ctypes.data)
        fns[(n, c, "binding")] = lambda z=z, y=y: ctx.softmax_xent(z, y)
        fns[(n, c, "C call")] = lambda args=args, opts=opts, ex=ex: real(*args)
        # the same with a new gradient array and its pointer taken per call (~2 us of Python)
        # (the array held by a name through the call: a temporary's memory would be freed before
        # the call writes it, corrupting the allocator's free lists)
        fns[(n, c, "C call, new grad")] = lambda args=args, z=z, opts=opts, ex=ex: (
            lambda g: real(*args[:-1], g.ctypes.data))(np.empty_like(z))
        fns[(n, c, "Python side")] = lambda z=z, y=y: stubbed(z, y)
        kargs = (kctx._ctx,) + args[1:]
        fns[(n, c, "binding, kernels")] = lambda z=z, y=y: kctx.softmax_xent(z, y)
        fns[(n, c, "C call, kernels")] = lambda kargs=kargs, opts=opts, ex=ex: real(*kargs)
        if old is not None:
            fns[(n, c, "binding --before")] = lambda z=z, y=y: old.softmax_xent(z, y)
            fns[(n, c, "Python side --before")] = lambda z=z, y=y: stubbed(z, y, before, old)
    for f in fns.values():
        f()
    med = interleaved(fns, rounds, inner)
    print(f"# one float32 call, {ctx.device_name}; median of {rounds} interleaved rounds of {inner} calls;"
          f" Python side with a {what}")
    for n, c in shapes:
        b, cc, p, new = (med[(n, c, k)] * 1e6 for k in ("binding", "C call", "Python side", "C call, new grad"))
        print(f"{n}x{c}  binding {b:7.1f} us   C call {cc:7.1f} us   Python side {p:6.1f} us   "
              f"binding - C call {b - cc:6.1f} us   C call with a new gradient array {new:7.1f} us")
        kb, kc = (med[(n, c, k)] * 1e6 for k in ("binding, kernels", "C call, kernels"))
        print(f"{n}x{c}  direct path off (CLXENT_DIRECT_MAX=0): binding {kb:7.1f} us   C call {kc:7.1f} us")
        if old is not None:
            b, p = (med[(n, c, k)] * 1e6 for k in ("binding --before", "Python side --before"))
            print(f"{n}x{c}  --before: binding {b:7.1f} us   Python side {p:6.1f} us   "
                  f"binding - C call {b - cc:6.1f} us")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["fresh", "small"])
    ap.add_argument("--shape", action="append", default=[])
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--inner", type=int, default=200, help="small: calls per round")
    ap.add_argument("--device", default=None)
    ap.add_argument("--before", metavar="INIT_PY", help="also time this copy of clxent/__init__.py")
    ap.add_argument("--no-numpy-thp", action="store_true",
                    help="NumPy's own arrays without MADV_HUGEPAGE, as where transparent huge pages are off or scarce")
    a = ap.parse_args()
    if a.no_numpy_thp:
        np.core.multiarray._set_madvise_hugepage(False)
    global before
    if a.before:
        before = load_before(a.before)
    with clxent.Context(a.device) as ctx:
        if a.what == "fresh":
            fresh(ctx, a.device, [shape_of(s) for s in a.shape or ["4096x32000"]], a.rounds or 15)
        else:
            small(ctx, a.device, [shape_of(s) for s in a.shape or ["1x10", "64x1000"]], a.rounds or 31, a.inner)
    return 0


if __name__ == "__main__":
    sys.exit(main())
