#!/usr/bin/env python3
"""clxent against its peers on the CPU: hard-label mean cross-entropy, loss and dL/dlogits, float32.

Per shape, one process runs every contender in interleaved rounds: each round calls each contender
once (in an order rotated round by round, with a short pause between contenders so that one peer's
spinning worker threads do not eat into the next one's time). The machine this was written for is
shared and noisy, so what counts is the MEDIAN OF THE PER-ROUND RATIOS peer_time / clxent_time:
both times of a ratio come from the same round, so a slow spell hits both.

Contenders, each only where it is installed (a missing one is skipped with a note):

  clxent in place     ctx.softmax_xent(work, y, in_place=True): the gradient overwrites the logits
                      (the logits are restored into `work` before each call, untimed)
  clxent fresh        ctx.softmax_xent(z, y): the gradient in a new array
  torch eager         F.cross_entropy(z, y).backward(), z.grad set to None before each call
  torch.compile       the same through torch.compile(F.cross_entropy, dynamic=False)
  jax.jit             jax.jit(jax.value_and_grad(loss)), block_until_ready on loss and gradient
  numpy               a stable log-softmax in float32 (max, exp, sum, scale), fresh gradient
  copy np.copyto      np.copyto(dst, z): the same bytes moved by a plain copy (the physical
  copy torch          dst.copy_(z)        reference; the faster of the two is "copy" below)

Every contender returns the loss as a Python float and the full gradient, computed. Two warm-up
calls of each (torch.compile's and jax.jit's compilation, clxent's kernel build, first-touch page
faults of the inputs) happen before the timed rounds; their time is printed, and is shorter on a
second run where torch's and PoCL's on-disk caches are warm. Small shapes call each contender
several times per round (printed) and take the mean; below 64 kB to move a call is all overhead
and no bandwidth is printed.

Reported per shape and contender: the median time, the bandwidth over the bytes that must move
(logits read once + gradient written once = 2 * n * c * 4 bytes), that bandwidth as a % of the
copy's, and the median (with the range) of the per-round ratios peer / clxent in place and peer /
clxent fresh (above 1: clxent is faster). A sanity line per shape checks clxent's loss against
NumPy's (relative difference <= 1e-4) and prints the largest gradient difference; a mismatch makes
the exit status 1.

Threads: torch.set_num_threads(cores); XLA and PoCL size their own pools to the cores; NumPy's
ufuncs run on one thread. The header says what each one uses.

Install the peers into a virtual environment outside the repository (they are not needed by the
library, its tests or CI):

    cmake -S . -B build && cmake --build build -j2
    python3 -m venv --system-site-packages ../peers-venv
    ../peers-venv/bin/pip install -r bench/peers-requirements.txt   # torch, jax: see there
    CLXENT_LIBRARY=$PWD/build/libclxent.so ../peers-venv/bin/python bench/peers.py

(The script imports the binding of this source tree, python/clxent; without CLXENT_LIBRARY that
binding loads an installed libclxent.so.1, else build/libclxent.so.) With the system's Python and
NumPy alone it runs clxent, NumPy and the copy.

Options: --shape NxC (repeatable; default 4096x32000 1024x128256 16384x1000 65536x10 1048576x10
1x10 64x1000), --rounds N (default 7), --csv, --device D (clxent's device, default "cpu"),
--skip NAME (repeatable: clxent-fresh, torch, torch.compile, jax, numpy, copy-torch).
"""
import argparse
import ctypes
import ctypes.util
import gc
import logging
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

DEFAULT_SHAPES = ["4096x32000", "1024x128256", "16384x1000", "65536x10", "1048576x10", "1x10", "64x1000"]
PAUSE_S = 0.005  # between two contenders, untimed: lets spinning worker threads go idle
SAMPLE_BYTES = 16 << 20  # small shapes: calls per sample so that a sample moves at least this much
MAX_CALLS = 100
MIN_BW_BYTES = 64 << 10  # below this a call is all overhead: no bandwidth is printed
LOSS_RTOL = 1e-4
SKIPPABLE = ["clxent-fresh", "torch", "torch.compile", "jax", "numpy", "copy-torch"]

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))  # the binding of this source tree


def note(*parts):
    """A line for the reader (a comment in --csv output)."""
    print(("# " if ARGS.csv else "") + " ".join(str(p) for p in parts), flush=True)


# ------------------------------------------------------------------------------ machine facts

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def mem_total_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return float("nan")


def load_average():
    """The 1, 5 and 15 minute load averages: how busy the shared machine was."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def git_commit():
    """The source tree's commit, "+ local changes" where the tree differs from it."""
    try:
        head = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", HERE, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + (" + local changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def opencl_compute_units(device_name):
    """CL_DEVICE_MAX_COMPUTE_UNITS of the OpenCL device named device_name, or None: the threads
    PoCL's CPU device runs a kernel on."""
    path = ctypes.util.find_library("OpenCL")
    if not path:
        return None
    try:
        cl = ctypes.CDLL(path)
    except OSError:
        return None
    uint, ptr = ctypes.c_uint32, ctypes.c_void_p
    count = uint()
    if cl.clGetPlatformIDs(0, None, ctypes.byref(count)) != 0 or not count.value:
        return None
    platforms = (ptr * count.value)()
    cl.clGetPlatformIDs(count.value, platforms, None)
    for p in platforms:
        n = uint()
        if cl.clGetDeviceIDs(ptr(p), ctypes.c_uint64(0xFFFFFFFF), 0, None, ctypes.byref(n)) != 0:
            continue
        devices = (ptr * n.value)()
        cl.clGetDeviceIDs(ptr(p), ctypes.c_uint64(0xFFFFFFFF), n.value, devices, None)
        for d in devices:
            name = ctypes.create_string_buffer(256)
            units = uint()
            cl.clGetDeviceInfo(ptr(d), uint(0x102B), ctypes.c_size_t(256), name, None)  # CL_DEVICE_NAME
            cl.clGetDeviceInfo(ptr(d), uint(0x1002), ctypes.c_size_t(4), ctypes.byref(units), None)  # COMPUTE_UNITS
            if name.value.decode(errors="replace") == device_name:
                return units.value
    return None


# ------------------------------------------------------------------------------ the peers

def load_peers(cores):
    """The optional peers' modules, None for each one missing, with a note saying why."""
    peers = {"torch": None, "jax": None}
    try:
        import torch
        import torch.nn.functional as F  # noqa: F401  (checks the install is whole)
        torch.set_num_threads(cores)
        # torch's C++ extension helper warns on a CPU-only machine that it found no CUDA runtime
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        peers["torch"] = torch
    except (ImportError, OSError, RuntimeError) as e:  # also a wheel whose shared libraries are missing
        note(f"torch: not available ({type(e).__name__}: {e}); torch eager, torch.compile and its copy skipped")
    try:
        import jax
        jax.config.update("jax_platforms", "cpu")
        peers["jax"] = jax
    except (ImportError, OSError, RuntimeError) as e:
        note(f"jax: not available ({type(e).__name__}: {e}); jax.jit skipped")
    return peers


def numpy_xent(z, y, rows):
    """Mean cross-entropy and its gradient in float32, stable: m = max, e = exp(z - m), s = sum e,
    loss = mean(m + ln s - z_y), grad = (e / s - onehot(y)) / n. The gradient is a new array."""
    n = z.shape[0]
    m = z.max(axis=1, keepdims=True)
    g = z - m
    np.exp(g, out=g)
    s = g.sum(axis=1, keepdims=True)
    loss = float(np.mean(m[:, 0] + np.log(s[:, 0]) - z[rows, y], dtype=np.float64))
    g *= np.float32(1.0) / (s * np.float32(n))
    g[rows, y] -= np.float32(1.0 / n)
    return loss, g


class Contender:
    """name; run() does one timed call and returns (loss, gradient) computed in full (a copy
    returns None); prep(), if given, runs untimed before each call."""

    def __init__(self, name, run, prep=None, copy=False):
        self.name, self.run, self.prep, self.copy = name, run, prep, copy
        self.samples = []  # seconds per call, one per round
        self.warmup_s = 0.0


def contenders_for(n, c, ctx, peers, skip):
    """The contenders on one shape's data, and that data's holders (kept alive by the caller)."""
    rng = np.random.default_rng(n * 1000003 + c)
    z = rng.standard_normal((n, c), dtype=np.float32)
    y64 = rng.integers(0, c, n, dtype=np.int64)
    y32 = y64.astype(np.int32)
    rows = np.arange(n)
    work = np.empty_like(z)
    dst = np.empty_like(z)
    out = [Contender("copy np.copyto", lambda: np.copyto(dst, z), copy=True)]

    def clxent_in_place():
        r = ctx.softmax_xent(work, y32, in_place=True)
        return r.loss, r.grad

    def clxent_fresh():
        r = ctx.softmax_xent(z, y32)
        return r.loss, r.grad

    out.append(Contender("clxent in place", clxent_in_place, prep=lambda: np.copyto(work, z)))
    if "clxent-fresh" not in skip:
        out.append(Contender("clxent fresh", clxent_fresh))
    if "numpy" not in skip:
        out.append(Contender("numpy", lambda: numpy_xent(z, y64, rows)))

    torch = peers["torch"]
    if torch is not None:
        import torch.nn.functional as F
        zt = torch.from_numpy(z).requires_grad_(True)  # shares z's memory; nothing writes it
        yt = torch.from_numpy(y64)
        dst_t = torch.empty_like(zt, requires_grad=False)

        def clear():
            zt.grad = None

        def torch_step(loss_fn):
            def run():
                loss = loss_fn(zt, yt)
                loss.backward()
                return loss.item(), zt.grad
            return run

        if "copy-torch" not in skip:
            def torch_copy():
                with torch.no_grad():
                    dst_t.copy_(zt)
            out.append(Contender("copy torch", torch_copy, copy=True))
        if "torch" not in skip:
            out.append(Contender("torch eager", torch_step(F.cross_entropy), prep=clear))
        if "torch.compile" not in skip:
            torch._dynamo.reset()  # one static compilation per shape, no recompilation limit
            compiled = torch.compile(F.cross_entropy, dynamic=False)
            out.append(Contender("torch.compile", torch_step(compiled), prep=clear))

    jax = peers["jax"]
    if jax is not None and "jax" not in skip:
        import jax.numpy as jnp

        def loss_fn(logits, labels):
            lse = jax.nn.logsumexp(logits, axis=1)
            picked = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
            return jnp.mean(lse - picked)

        step = jax.jit(jax.value_and_grad(loss_fn))
        zj, yj = jax.device_put(z), jax.device_put(y32)

        def jax_run():
            loss, grad = jax.block_until_ready(step(zj, yj))
            return float(loss), grad
        out.append(Contender("jax.jit", jax_run))
    return out, (z, y64, rows)


# ------------------------------------------------------------------------------ one shape

def results_names(contenders):
    return {k.name for k in contenders}


def fmt_bytes(nbytes):
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes} bytes"


def fmt_ratio(values):
    if not values:
        return "—"
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def run_shape(n, c, ctx, peers, rounds, skip):
    nbytes = 2 * n * c * 4
    calls = max(1, min(MAX_CALLS, -(-SAMPLE_BYTES // nbytes)))
    contenders, (z, y64, rows) = contenders_for(n, c, ctx, peers, skip)

    # Warm-up: compile, build, fault in, and keep the first results for the sanity check.
    results = {}
    for k in list(contenders):
        t0 = time.perf_counter()
        try:
            for _ in range(2):
                if k.prep:
                    k.prep()
                results[k.name] = k.run()
        except Exception as e:  # deliberately broad: a peer that cannot run this shape (memory, no compiler)
            note(f"{n}x{c}: {k.name} skipped: {type(e).__name__}: {e}")
            contenders.remove(k)
            continue
        k.warmup_s = time.perf_counter() - t0

    ok = check(n, c, results, z, y64, rows)
    results.clear()
    if "clxent in place" not in results_names(contenders):
        note(f"{n}x{c}: no clxent result to compare with; shape skipped")
        return False

    for r in range(rounds):
        order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
        for k in order:
            total = 0.0
            for _ in range(calls):
                if k.prep:
                    k.prep()
                t0 = time.perf_counter()
                k.run()
                total += time.perf_counter() - t0
            k.samples.append(total / calls)
            time.sleep(PAUSE_S)

    report(n, c, nbytes, calls, rounds, contenders)
    return ok


def check(n, c, results, z, y64, rows):
    """clxent against NumPy (and its fresh form against its in-place one): loss within LOSS_RTOL
    relative, the largest gradient difference printed."""
    if "clxent in place" not in results:
        return False
    ref_loss, ref_grad = results.get("numpy") or numpy_xent(z, y64, rows)
    loss, grad = results["clxent in place"]
    rel = abs(loss - ref_loss) / max(abs(ref_loss), 1e-30)
    dgrad = float(np.max(np.abs(grad - ref_grad)))
    ok = rel <= LOSS_RTOL
    extra = ""
    if "clxent fresh" in results:
        same = np.array_equal(results["clxent fresh"][1], grad)
        extra = f"; fresh gradient {'equals' if same else 'DIFFERS from'} the in-place one"
    note(f"check {n}x{c}: clxent loss {loss:.7g}, NumPy {ref_loss:.7g}, relative difference {rel:.1e} "
         f"({'ok' if ok else 'MISMATCH'}, limit {LOSS_RTOL:g}); max |grad difference| {dgrad:.1e}{extra}")
    return ok


def report(n, c, nbytes, calls, rounds, contenders):
    med = {k.name: statistics.median(k.samples) for k in contenders}
    copies = [k for k in contenders if k.copy]
    copy_bw = nbytes / min(med[k.name] for k in copies)
    base_in = next(k for k in contenders if k.name == "clxent in place")
    base_fresh = next((k for k in contenders if k.name == "clxent fresh"), None)
    rows = []
    for k in sorted(contenders, key=lambda k: med[k.name]):
        ratio_in = [a / b for a, b in zip(k.samples, base_in.samples, strict=True)] if k is not base_in else []
        ratio_fr = ([a / b for a, b in zip(k.samples, base_fresh.samples, strict=True)]
                    if base_fresh is not None and k is not base_fresh else [])
        bw = nbytes / med[k.name]
        rows.append((k, med[k.name], bw, ratio_in, ratio_fr))
    warm = ", ".join(f"{k.name} {k.warmup_s:.2f} s" for k in contenders if not k.copy)
    if ARGS.csv:
        for k, t, bw, ri, rf in rows:
            cells = [n, c, k.name, f"{t * 1e3:.4f}", f"{bw / 1e9:.3f}", f"{100 * bw / copy_bw:.1f}"]
            for r in (ri, rf):
                cells += [f"{statistics.median(r):.3f}", f"{min(r):.3f}", f"{max(r):.3f}"] if r else ["", "", ""]
            print(",".join(str(v) for v in cells), flush=True)
        note(f"{n}x{c}: warm-up (2 calls): {warm}")
        return
    print(f"\n{n} × {c} ({fmt_bytes(nbytes)} to move; {rounds} rounds, {calls} call{'s' * (calls > 1)} "
          f"per contender per round)\n")
    print("| contender | median ms | GB/s | % of copy | peer / clxent in place | peer / clxent fresh |")
    print("|---|---|---|---|---|---|")
    for k, t, bw, ri, rf in rows:
        bw_cells = f"{bw / 1e9:.2f} | {100 * bw / copy_bw:.0f}%" if nbytes >= MIN_BW_BYTES else "— | —"
        print(f"| {k.name} | {t * 1e3:.3f} | {bw_cells} | {fmt_ratio(ri)} | {fmt_ratio(rf)} |")
    print(f"\nwarm-up (2 calls each, untimed): {warm}", flush=True)


# ------------------------------------------------------------------------------ main

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", action="append", default=[], metavar="NxC",
                    help=f"a shape (repeatable; default {' '.join(DEFAULT_SHAPES)})")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds per shape (default 7)")
    ap.add_argument("--csv", action="store_true", help="CSV rows instead of Markdown tables")
    ap.add_argument("--device", default="cpu", help="clxent's device (default cpu)")
    ap.add_argument("--skip", action="append", default=[], choices=SKIPPABLE, help="leave a contender out")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    shapes = []
    for s in args.shape or DEFAULT_SHAPES:
        try:
            n, c = (int(v) for v in s.lower().split("x"))
        except ValueError:
            ap.error(f"--shape {s!r}: expected NxC, e.g. 4096x32000")
        if n < 1 or c < 1:
            ap.error(f"--shape {s!r}: both sizes must be at least 1")
        shapes.append((n, c))
    return args, shapes


def main():
    global ARGS
    ARGS, shapes = parse_args()
    warnings.simplefilter("default")  # show, once, anything a peer warns about
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    import clxent  # after the argument check, so --help works without the library
    ctx = clxent.Context(ARGS.device)
    env = [f"{v}={shlex.quote(os.environ[v])}" for v in ("CLXENT_LIBRARY", "CLXENT_DEVICE", "CLXENT_VARIANT",
                                                          "POCL_DEVICES", "POCL_MAX_PTHREAD_COUNT", "OMP_NUM_THREADS",
                                                          "XLA_FLAGS") if v in os.environ]
    note("command:", " ".join(env + ["python3"] + [shlex.quote(a) for a in sys.argv]))
    note(f"machine: {cpu_model()}, {cores} cores available ({os.cpu_count()} online), "
         f"{mem_total_gib():.1f} GiB; {platform.platform()}; load average {load_average()}")
    note(f"clxent {clxent.version()} (source commit {git_commit()}), device {ctx.device_name!r}, "
         f"{opencl_compute_units(ctx.device_name) or '?'} compute units (PoCL threads)")
    note(f"Python {platform.python_version()} ({sys.executable}), NumPy {np.__version__} (ufuncs on 1 thread)")
    peers = load_peers(cores)
    torch, jax = peers["torch"], peers["jax"]
    if torch is not None:
        note(f"torch {torch.__version__}: set_num_threads({cores}) -> {torch.get_num_threads()} threads "
             f"(eager and torch.compile's OpenMP code)")
    if jax is not None:
        import jaxlib
        note(f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, {jax.devices()[0].platform} device: XLA's own "
             f"thread pool ({cores} cores)")
    note(f"timing: median per contender over {ARGS.rounds} interleaved rounds; ratios = median of per-round "
         f"peer_time / clxent_time (above 1: clxent faster), with their range; GB/s over 2*n*c*4 bytes; "
         f"% of copy = of the faster plain copy (np.copyto, torch copy_)")
    if ARGS.csv:
        print("n,c,contender,median_ms,GBps,pct_copy,ratio_in_place,ratio_in_place_min,ratio_in_place_max,"
              "ratio_fresh,ratio_fresh_min,ratio_fresh_max", flush=True)

    ok = True
    t0 = time.perf_counter()
    for n, c in shapes:
        ok &= run_shape(n, c, ctx, peers, ARGS.rounds, set(ARGS.skip))
        gc.collect()
    if not ARGS.csv:
        print()
    note(f"total {time.perf_counter() - t0:.0f} s; load average {load_average()} (other processes share the cores)")
    ctx.close()
    return 0 if ok else 1


ARGS = None

if __name__ == "__main__":
    sys.exit(main())
