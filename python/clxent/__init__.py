"""clxent: fused softmax / sigmoid cross-entropy, loss and gradient, on any OpenCL device.

A ctypes binding of libclxent on NumPy arrays. Natural logarithms throughout; for logits z of a
row, a = softmax(z), lse = ln sum_j exp(z_j):

    softmax_xent       loss_i = lse_i - z_{i,y_i},            grad = scale * (a - onehot(y))
    softmax_xent_soft  loss_i = -sum_j t_ij ln a_ij,           grad = scale * (a * sum(t) - t)
    sigmoid_xent       loss = -[y ln s + (1-y) ln(1-s)], s = sigmoid(z), grad = scale * (s - y)
    bce                the same from probabilities (logs clamped at -100)
    entropy, cross_entropy, kl_div   H(p), H(p,q), D(p||q) per row

scale is 1/(rows counted) for reduction="mean" and 1 otherwise. The options (class_weight,
label_smoothing, z_loss, softcap, pos_weight) follow PyTorch's and Liger-Kernel's semantics; see
the repository's README for their formulas. Every loss also takes grad_output= (the upstream
gradient: the gradient returned is grad_output times the loss's, the loss itself unscaled) and
mean_denominator= (reduction="mean": divide the loss and gradient by this instead of the count,
as gradient accumulation over micro-batches needs).
"""
import ctypes
import ctypes.util
import numbers
import operator
import os
from collections import namedtuple

import numpy as np

from ._pool import GradientPool, PoolInfo

__all__ = ["Context", "Error", "InvalidArgument", "InvalidType", "LabelRange", "NoDevice", "BuildError",
           "OutOfMemory", "OpenCLError", "Result", "LinearResult", "PoolInfo", "gradient_pool", "version", "STATUS_NAMES"]

STATUS_NAMES = ["OK", "INVALID_ARG", "LABEL_RANGE", "NO_DEVICE", "BUILD", "OUT_OF_MEMORY", "OPENCL"]
_REDUCTIONS = {"mean": 0, "sum": 1, "none": 2}
_DTYPES = {"float32": 0, "float16": 1, "bfloat16": 2}
_INT32_MIN, _INT32_MAX = -2 ** 31, 2 ** 31 - 1
_POOL = GradientPool()  # where returned gradients live; see gradient_pool()


_ABI_MAJOR = 1  # the library's major version (its SONAME) whose struct layout this binding writes


def _incompatible(lib):
    """Why lib cannot be used with this binding, or None. Libraries before 1.0 lack
    clxent_create_ex and read clxent_opts / clxent_ex without the leading `size` field, so handing
    them this binding's structs would misread every option."""
    if not hasattr(lib, "clxent_version_string"):
        return "not libclxent (no clxent_version_string)"
    version = lib.clxent_version_string
    version.restype = ctypes.c_char_p
    text = version().decode()
    if not hasattr(lib, "clxent_create_ex"):
        return (f"libclxent {text} is too old: it lacks clxent_create_ex and reads clxent_opts and clxent_ex "
                f"without their leading size field; this binding needs libclxent {_ABI_MAJOR}.x")
    lib.clxent_version.restype = ctypes.c_uint
    if lib.clxent_version() // 10000 != _ABI_MAJOR:
        return f"libclxent {text} has another major version; this binding needs libclxent {_ABI_MAJOR}.x"
    return None


def _find_library():
    """$CLXENT_LIBRARY if set (and only it), else the libclxent.so.1 bundled in this package (the
    wheel's), else an installed libclxent.so.1, else the build/ tree of the source tree this package
    lies in; a library of another major version is refused."""
    here = os.path.dirname(os.path.abspath(__file__))
    explicit = os.environ.get("CLXENT_LIBRARY")
    if explicit:
        candidates = [explicit]
    else:
        # the package's folders: this one, and for an editable install also the one in
        # site-packages that holds what CMake installed
        bundled = [os.path.join(d, f"libclxent.so.{_ABI_MAJOR}") for d in globals().get("__path__", [here])]
        candidates = [next((b for b in bundled if os.path.exists(b)), None),
                      f"libclxent.so.{_ABI_MAJOR}", ctypes.util.find_library("clxent"),
                      os.path.join(here, "..", "..", "build", "libclxent.so")]
    errors = []
    for path in candidates:
        if not path:
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            errors.append(f"{path}: {e}")
            continue
        why = _incompatible(lib)
        if why is None:
            return lib
        errors.append(f"{path}: {why}")
    raise ImportError(f"clxent: no usable C library libclxent (version {_ABI_MAJOR}.x) was found; install the "
                      f"package with `pip install ./python` (which builds and bundles it), or build it (cmake) "
                      f"and set CLXENT_LIBRARY to its path. Tried:\n  " + "\n  ".join(errors))


_lib = _find_library()


class _Sized(ctypes.Structure):
    """A struct of the growable kind: its leading `size` holds sizeof(the struct) as this binding
    lays it out, so the library reads only the fields it has and defaults the rest."""

    def __init__(self, *args, **kwargs):
        super().__init__(ctypes.sizeof(self), *args, **kwargs)


class _Opts(_Sized):
    _fields_ = [("size", ctypes.c_size_t), ("reduction", ctypes.c_int), ("ignore_index", ctypes.c_int32),
                ("class_weight", ctypes.c_void_p), ("label_smoothing", ctypes.c_float),
                ("z_loss", ctypes.c_float), ("softcap", ctypes.c_float), ("pos_weight", ctypes.c_void_p),
                ("grad_output", ctypes.c_void_p), ("mean_denominator", ctypes.c_double)]  # 1.1


class _Ex(_Sized):
    _fields_ = [("size", ctypes.c_size_t), ("dtype", ctypes.c_int), ("lse", ctypes.c_void_p),
                ("bias_grad", ctypes.c_void_p),
                ("argmax", ctypes.c_void_p), ("correct", ctypes.c_void_p), ("inner", ctypes.c_size_t)]  # 1.1


class _Config(_Sized):
    _fields_ = [("size", ctypes.c_size_t), ("cache", ctypes.c_int), ("cache_dir", ctypes.c_char_p),
                ("max_alloc", ctypes.c_uint64), ("tuning", ctypes.c_void_p)]


_P, _S = ctypes.c_void_p, ctypes.c_size_t
_SIGNATURES = {
    "clxent_create": ([ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p], ctypes.c_int),
    "clxent_create_ex": ([ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.POINTER(_Config)], ctypes.c_int),
    "clxent_destroy": ([_P], None),
    "clxent_status_str": ([ctypes.c_int], ctypes.c_char_p),
    "clxent_last_error": ([_P], ctypes.c_char_p),
    "clxent_device_name": ([_P], ctypes.c_char_p),
    "clxent_device_count": ([_P], _S),
    "clxent_device_share": ([_P, _S], ctypes.c_double),
    "clxent_version": ([], ctypes.c_uint),
    "clxent_version_string": ([], ctypes.c_char_p),
    "clxent_softmax_xent_ex": ([_P, _S, _S, _P, _P, ctypes.POINTER(_Opts), ctypes.POINTER(_Ex), _P, _P], ctypes.c_int),
    "clxent_softmax_xent_soft_ex": ([_P, _S, _S, _P, _P, ctypes.POINTER(_Opts), ctypes.POINTER(_Ex), _P, _P],
                                    ctypes.c_int),
    "clxent_sigmoid_xent_ex": ([_P, _S, _S, _P, _P, ctypes.POINTER(_Opts), ctypes.POINTER(_Ex), _P, _P], ctypes.c_int),
    "clxent_bce_ex": ([_P, _S, _S, _P, _P, ctypes.POINTER(_Opts), ctypes.POINTER(_Ex), _P, _P], ctypes.c_int),
    "clxent_entropy": ([_P, _S, _S, _P, _P], ctypes.c_int),
    "clxent_linear_xent": ([_P, _S, _S, _S, _P, _P, _P, _P, ctypes.POINTER(_Opts), _P, _P, _P, _P], ctypes.c_int),
    "clxent_linear_xent_ex": ([_P, _S, _S, _S, _P, _P, _P, _P, ctypes.POINTER(_Opts), ctypes.POINTER(_Ex), _P, _P, _P,
                               _P], ctypes.c_int),
    "clxent_cross_entropy": ([_P, _S, _S, _P, _P, _P], ctypes.c_int),
    "clxent_kl_div": ([_P, _S, _S, _P, _P, _P], ctypes.c_int),
}
for _name, (_args, _ret) in _SIGNATURES.items():
    _fn = getattr(_lib, _name)
    _fn.argtypes, _fn.restype = _args, _ret


def version():
    """The version of the C library loaded, "MAJOR.MINOR.PATCH"."""
    return _lib.clxent_version_string().decode()


class Error(RuntimeError):
    """A clxent call failed. .status is the clxent_status name ("INVALID_ARG", ...), .code its
    number, .message the library's clxent_last_error text naming the bad argument, row or OpenCL
    call. Every failure raises one of the subclasses below, which are also the built-in exception a
    Python caller expects (ValueError, IndexError, MemoryError); catch Error for all of them."""

    def __init__(self, status, message):
        self.status = STATUS_NAMES[status] if 0 <= status < len(STATUS_NAMES) else str(status)
        self.code = status
        self.message = message
        super().__init__(status, message)  # args that rebuild it (pickling)

    def __str__(self):
        return f"CLXENT_ERR_{self.status}: {self.message}"


class InvalidArgument(Error, ValueError):
    """INVALID_ARG: a bad argument, option, shape, configuration or CLXENT_* environment value,
    found by the library or by this binding before the call."""


class InvalidType(InvalidArgument, TypeError):
    """INVALID_ARG for an argument of a type the call does not take (float labels, a uint16 array
    without dtype=, in_place=True on an array the gradient cannot be written into as it is)."""


class LabelRange(Error, IndexError):
    """LABEL_RANGE: a label outside [0, classes) that is not ignore_index (also one outside int32,
    the library's label type)."""


class NoDevice(Error):
    """NO_DEVICE: no OpenCL platform or device matches the request."""


class BuildError(Error):
    """BUILD: the kernels did not compile for the device; the message holds the build log."""


class OutOfMemory(Error, MemoryError):
    """OUT_OF_MEMORY: a host or device allocation failed (or one row exceeds a device block)."""


class OpenCLError(Error):
    """OPENCL: any other OpenCL failure, the call and the CL error named in the message."""


_ERRORS = {1: InvalidArgument, 2: LabelRange, 3: NoDevice, 4: BuildError, 5: OutOfMemory, 6: OpenCLError}


def _error(status, message):
    """The exception for a clxent_status (Error itself for a status this binding does not know)."""
    return _ERRORS.get(status, Error)(status, message)


def _invalid(message):
    return InvalidArgument(1, message)


def _bad_type(message):
    return InvalidType(1, message)


def _int32(value, name):
    """An integer argument that the library takes as int32: a Python or NumPy integer in range."""
    try:
        v = operator.index(value)
    except TypeError:
        raise _bad_type(f"{name}: expected an integer, got {type(value).__name__} {value!r}") from None
    if not _INT32_MIN <= v <= _INT32_MAX:
        raise _invalid(f"{name} = {v} is outside the int32 range the library takes")
    return v


def _labels(labels, n, c):
    """[n] int32 class indices, refusing what a cast would change: float or bool labels (TypeError)
    and integers outside int32 (LabelRange, as the library reports any label outside [0, c))."""
    if type(labels) is np.ndarray and labels.dtype is _I32 and labels.shape == (n,):
        flags = labels.flags
        if flags.c_contiguous and flags.aligned:
            return labels  # the common case, used as it is
    y = np.asarray(labels)
    if y.dtype == object and y.size and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                            for v in y.flat):
        pass  # Python integers beyond int64: compared below as they are
    elif y.dtype.kind not in "iu" and y.size:
        raise _bad_type(f"labels: expected integer class indices, got {y.dtype} values; float and bool labels "
                        f"are not truncated or converted (cast them yourself, e.g. labels.astype(np.int64))")
    y = y.reshape(-1)
    if y.shape != (n,):
        raise _invalid(f"labels: expected {n} values, got shape {np.shape(labels)}")
    if not np.can_cast(y.dtype, np.int32):
        if y.size and (y.min() < _INT32_MIN or y.max() > _INT32_MAX):
            i = int(np.flatnonzero((y < _INT32_MIN) | (y > _INT32_MAX))[0])
            raise LabelRange(2, f"labels[{i}] = {int(y[i])} is outside [0, {c}) (and outside int32, the library's "
                                f"label type)")
        y = y.astype(np.int32)
    return np.require(y, np.int32, ["C_CONTIGUOUS", "ALIGNED"])


LinearResult = namedtuple("LinearResult", ["loss", "grad_hidden", "grad_weight", "grad_bias", "lse"])
LinearResult.__doc__ = """loss: a float (mean, sum) or an array (none); the gradients and lse: arrays or None."""

class Result(namedtuple("Result", ["loss", "grad", "lse", "bias_grad"])):
    """loss: a float (mean, sum) or an array (none); grad, lse, bias_grad: arrays or None. Two more
    attributes, outside the tuple (which callers unpack as four values): argmax, the int32 array of
    each row's argmax of the logits (softmax losses with argmax=True), and correct, an int: the rows
    not ignored whose argmax is their label (softmax_xent with argmax=True). None when not asked."""
    argmax = None
    correct = None


_result = tuple.__new__  # _result(Result, (...)): a Result without namedtuple's argument parsing

_F32, _F16, _U16, _I32 = np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.uint16), np.dtype(np.int32)


def _ptr(a):
    return None if a is None else a.ctypes.data


def _plain(a, dtype):
    """The storage type's name when `a` is an array the library can take exactly as it is: a 2-D,
    C-contiguous, aligned ndarray of float32 or float16 (dtype None or naming it), or of uint16
    with dtype="bfloat16". None otherwise: the full checks and conversions then decide. Only a
    shortcut for the common case: whatever it accepts, the full path accepts unchanged."""
    if type(a) is np.ndarray and a.ndim == 2:
        d = a.dtype
        if d is _F32:
            name = "float32"
        elif d is _F16:
            name = "float16"
        elif d is _U16:
            name = "bfloat16"
            if dtype is None:
                return None
        else:
            return None
        if dtype is not None and (type(dtype) is not str or dtype != name):
            return None
        flags = a.flags
        if flags.c_contiguous and flags.aligned:
            return name
    return None


_OPTS = {}  # (reduction code, ignore_index, label_smoothing, z_loss, softcap) -> its _Opts, read-only
_EX = {}  # dtype name -> the _Ex without lse or bias_grad, read-only


def _opts(code, ignore_index, weight, label_smoothing, z_loss, softcap, pos_weight, upstream=None,
          mean_denominator=None):
    """The clxent_opts struct; the ones without arrays or a denominator are built once and shared (the
    library only reads them)."""
    if weight is not None or pos_weight is not None or upstream is not None or mean_denominator is not None:
        return _capped(_Opts(code, ignore_index, weight.ctypes.data if weight is not None else None, label_smoothing,
                             z_loss, softcap, pos_weight.ctypes.data if pos_weight is not None else None,
                             upstream.ctypes.data if upstream is not None else None,
                             0.0 if mean_denominator is None else mean_denominator), softcap)
    key = (code, ignore_index, label_smoothing, z_loss, softcap)
    try:
        return _OPTS[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable value: ctypes says whether it converts
        return _capped(_Opts(code, ignore_index, None, label_smoothing, z_loss, softcap, None), softcap)
    opts = _capped(_Opts(code, ignore_index, None, label_smoothing, z_loss, softcap, None), softcap)
    if len(_OPTS) >= 256:
        _OPTS.clear()
    _OPTS[key] = opts
    return opts


def _capped(opts, softcap):
    """opts, unless a nonzero softcap became 0 in float32 (below 2^-150): that would turn the cap off,
    where the library rejects every cap below 2^-126 (the ones it receives)."""
    if opts.softcap == 0.0 and softcap:
        raise _invalid(f"softcap = {softcap!r} is 0 in float32: a cap must be 0 (off) or within "
                       f"[2^-126, 2^126] (1/s a normal float)")
    return opts


def _upstream(grad_output, code, shape):
    """grad_output as the float32 array the library reads: one value for "mean" and "sum" (a number
    or an array of one), else an array of the loss's shape; its values are the library's to check."""
    if grad_output is None:
        return None
    g = np.require(np.asarray(grad_output, dtype=np.float32), requirements=["C_CONTIGUOUS", "ALIGNED"])
    if code != 2:
        if g.size != 1:
            raise _invalid(f"grad_output: reduction {'mean' if code == 0 else 'sum'} has one loss value, so one "
                           f"upstream gradient; got shape {g.shape}")
        return g.reshape(1)
    if g.shape != tuple(shape):
        raise _invalid(f"grad_output: reduction 'none' takes one value per loss value, shape {tuple(shape)}; "
                       f"got shape {g.shape}")
    return g


def _denominator(mean_denominator, code):
    if mean_denominator is None:
        return None
    if code != 0:
        raise _invalid(f"mean_denominator applies to reduction 'mean' only, got {mean_denominator!r} with "
                       f"reduction {'sum' if code == 1 else 'none'}")
    # a real number (not text, not a bool) > 0: NaN fails too, and 0 would silently mean the default
    if not isinstance(mean_denominator, numbers.Real) or isinstance(mean_denominator, (bool, np.bool_)) or \
            not float(mean_denominator) > 0:
        raise _invalid(f"mean_denominator must be a positive number, got {mean_denominator!r}")
    return float(mean_denominator)


def _reduction(reduction):
    try:
        return _REDUCTIONS[reduction]
    except (KeyError, TypeError):
        raise _invalid(f"reduction must be one of {sorted(_REDUCTIONS)}, got {reduction!r}") from None


_opencl_pid = None  # the process whose Context initialized OpenCL, None before any Context


def _forked(what):
    return OpenCLError(6, f"{what}: OpenCL drivers do not survive fork (a call would hang). Make Contexts only in "
                          f"processes that did not inherit one: start workers with the 'spawn' or 'forkserver' "
                          f"method (multiprocessing.get_context('spawn'), DataLoader(multiprocessing_context="
                          f"'spawn')), or fork before the parent's first Context")


def _not_forked():
    """Refuses a new Context in a process forked from one that had already initialized OpenCL: the
    child inherits the driver's state without its threads, and PoCL (like CUDA) then hangs."""
    if _opencl_pid is not None and _opencl_pid != os.getpid():
        raise _forked(f"this process ({os.getpid()}) was forked from process {_opencl_pid} after that one had "
                      f"made a clxent.Context")


def gradient_pool(*, max_blocks=None, max_bytes=None, min_bytes=None, clear=False):
    """Settings and state of the memory that returned gradients live in; returns a PoolInfo.

    A gradient of at least min_bytes (1 MiB) is written into a block the binding maps itself, not
    into a new NumPy array: when the last array that reaches a block (the gradient or any view of
    it) is gone, the block is kept, already paged in, for the next call of that size. A training
    loop's `loss, grad = ctx.softmax_xent(z, y)` then costs what the call in place costs, where a
    new array per call pays for first-touch page faults on the whole gradient. A block is never
    reused while any array over it is alive. At most max_blocks (4) released blocks of at most
    max_bytes (an eighth of the physical memory, at least 1 GiB) in all are kept, the least
    recently released dropped first. max_blocks=0 turns the pool off (a new NumPy array per call,
    as before); clear=True releases the blocks kept now."""
    limits = []
    for name, v in (("max_blocks", max_blocks), ("max_bytes", max_bytes), ("min_bytes", min_bytes)):
        if v is not None:
            try:
                if isinstance(v, bool):
                    raise TypeError
                v = operator.index(v)
            except TypeError:
                raise _bad_type(f"{name}: expected a non-negative integer, got {v!r}") from None
            if v < 0:
                raise _invalid(f"{name} = {v} is negative")
        limits.append(v)
    return _POOL.configure(*limits, clear=bool(clear))


class Context:
    """OpenCL device(s) with built kernels. device: None ($CLXENT_DEVICE, else the first GPU, else
    any device), "gpu", "cpu", "P:D", or part of a device name; "all" or a comma-separated list of
    those for several devices, which split every call by rows. Use one Context per thread.

    The settings below default (None) to their CLXENT_* environment variable, else the library's
    default: cache (True/False) the on-disk program binary cache ($CLXENT_CACHE; on by default),
    cache_dir its folder ($CLXENT_CACHE_DIR, else $XDG_CACHE_HOME/clxent or ~/.cache/clxent),
    max_alloc a cap in bytes on any one device buffer ($CLXENT_MAX_ALLOC, else the device's).

    Every loss method returns Result(loss, grad, lse, bias_grad). The gradient is written into
    logits itself with in_place=True, into the caller's array with out= (writable, C-contiguous,
    aligned, of the gradient's type and the input's shape, not overlapping the inputs), and else
    into memory of the gradient pool (see gradient_pool()) for large gradients, a new array for
    small ones. None of these is ever aliased by a later call's result."""

    def __init__(self, device=None, *, cache=None, cache_dir=None, max_alloc=None):
        self._handle = None
        self._pid = os.getpid()
        self._loss = ctypes.c_float()  # a reduced loss lands here (one thread uses a Context at a time)
        self._loss_at = ctypes.addressof(self._loss)
        if cache is not None and not isinstance(cache, bool):
            raise _bad_type(f"cache: expected None, True or False, got {cache!r}")
        if max_alloc is not None:
            try:
                max_alloc = operator.index(max_alloc)
            except TypeError:
                raise _bad_type(f"max_alloc: expected an integer number of bytes, got {max_alloc!r}") from None
            if not 1 <= max_alloc < 2 ** 64:
                raise _invalid(f"max_alloc = {max_alloc} is not a number of bytes in [1, 2**64)")
        config = _Config({None: 0, True: 1, False: 2}[cache], None if cache_dir is None else os.fsencode(cache_dir),
                         max_alloc or 0, None)
        _not_forked()
        global _opencl_pid
        _opencl_pid = self._pid  # OpenCL is initialized in this process from here on (even if this fails)
        handle = ctypes.c_void_p()
        st = _lib.clxent_create_ex(ctypes.byref(handle), None if device is None else device.encode(),
                                   ctypes.byref(config))
        if st != 0:
            raise _error(st, _lib.clxent_last_error(None).decode())
        self._handle = handle

    @property
    def _ctx(self):
        """The library's handle, refused in a process forked from the one that made it."""
        if self._pid != os.getpid():
            raise _forked(f"this clxent.Context was made in process {self._pid}, and this process ({os.getpid()}) "
                          f"was forked from it")
        return self._handle

    def close(self):
        """Releases the device resources (also done by the garbage collector and `with`). In a
        process forked from the one that made the Context it only drops the handle: the driver's
        state did not survive the fork, and releasing it could hang."""
        if getattr(self, "_handle", None):
            if self._pid == os.getpid():
                _lib.clxent_destroy(self._handle)
            self._handle = None

    def __reduce__(self):
        raise TypeError("a clxent.Context cannot be pickled or copied: it holds an OpenCL context and device "
                        "buffers of this process. Make a new one where it is needed (clxent.torch's modules: "
                        "leave context=None to use each thread's own)")

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def device_name(self):
        """The device's name; several devices' names joined by " + "."""
        return _lib.clxent_device_name(self._ctx).decode()

    @property
    def device_shares(self):
        """The fraction of each batch's rows every device takes: [1.0] for one device."""
        return [_lib.clxent_device_share(self._ctx, k) for k in range(_lib.clxent_device_count(self._ctx))]

    # ---------------------------------------------------------------- helpers

    def _check(self, st):
        if st != 0:
            raise _error(st, _lib.clxent_last_error(self._ctx).decode())

    @staticmethod
    def _storage(x, dtype):
        """The storage type name: given, else float16 for float16 arrays, else float32. A uint16
        array holds a 16-bit type's bits, so it needs dtype= to say which."""
        if dtype is not None:
            if dtype not in _DTYPES:
                raise _invalid(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
            return dtype
        kind = x.dtype if isinstance(x, np.ndarray) else np.asarray(x).dtype
        if kind == np.uint16:
            raise _bad_type("a uint16 array holds the bits of 16-bit floats: say which with dtype='bfloat16' or "
                            "dtype='float16' (it is not converted to float32 values)")
        return "float16" if kind == np.float16 else "float32"

    @staticmethod
    def _matrix(x, name, dtype, bits, vector_is_column=False, spatial=False):
        """A C-contiguous, aligned 2-D array of the storage type (no copy when it already is one).
        bits: dtype= was given, so a uint16 array is read as that 16-bit type's bits. spatial: the
        softmax losses also take (N, C, d1, ..., dK), kept in its shape."""
        x = np.asarray(x)
        if x.dtype == np.uint16:
            if not bits or dtype == "float32":
                raise _bad_type(f"{name}: a uint16 array holds the bits of 16-bit floats: pass dtype='bfloat16' "
                                f"or dtype='float16' (it is not converted to float32 values)")
            if dtype == "float16":
                x = x.view(np.float16)
        elif dtype == "bfloat16":
            raise _bad_type(f"{name}: bfloat16 storage takes a uint16 array of bfloat16 bits, got {x.dtype}")
        else:
            x = x.astype(dtype, copy=False)
        if x.ndim == 1:
            x = x.reshape(-1, 1) if vector_is_column else x.reshape(1, -1)
        if x.ndim != 2 and not (spatial and x.ndim > 2):
            raise _invalid(f"{name}: expected a 2-D array [n, c]{' or (N, C, d1, ..., dK)' if spatial else ''}, "
                           f"got shape {x.shape}")
        return np.require(x, requirements=["C_CONTIGUOUS", "ALIGNED"])

    def _input(self, a, name, dtype, vector_is_column=False, spatial=False):
        """(storage name, the 2-D array the library reads): `a` itself when it can be used as it is."""
        storage = _plain(a, dtype)
        if storage is not None:
            return storage, a
        storage = self._storage(a, dtype)
        return storage, self._matrix(a, name, storage, dtype is not None, vector_is_column, spatial)

    def _aux(self, a, name, storage, dtype, shape, vector_is_column=False, spatial=False):
        """Targets of the input's storage type and shape."""
        t = a if _plain(a, dtype) == storage else self._matrix(a, name, storage, dtype is not None, vector_is_column,
                                                                 spatial)
        if t.shape != shape:
            raise _invalid(f"{name}: expected shape {shape}, got {t.shape}")
        return t

    @staticmethod
    def _writable(a, dtype, what, into):
        """An array the gradient can be written into as it is (in_place=True's logits, out=): refuse one
        it cannot, rather than writing a private copy, or into read-only memory."""
        if not isinstance(a, np.ndarray):
            raise _bad_type(f"{what}: {into} must be a NumPy array to write the gradient into, got "
                            f"{type(a).__name__}")
        if a.dtype not in {"float32": (np.float32,), "float16": (np.float16, np.uint16),
                           "bfloat16": (np.uint16,)}[dtype]:
            raise _bad_type(f"{what}: {into} is {a.dtype}, the gradient {dtype}: it would be written into a converted "
                            f"copy, not into {into}")
        if not a.flags.writeable:
            raise _invalid(f"{what}: {into} is read-only")
        if not (a.flags.c_contiguous and a.flags.aligned):
            raise _invalid(f"{what}: {into} is not C-contiguous and aligned: the gradient would be written into a "
                           f"copy, not into {into}")

    @classmethod
    def _in_place(cls, original, x, dtype, name):
        """in_place=True writes the gradient into the caller's array itself."""
        cls._writable(original, dtype, "in_place=True", name)
        if x.ctypes.data != original.ctypes.data:  # the checks above should make this impossible
            raise _invalid(f"in_place=True: {name} could not be used without a copy")

    @classmethod
    def _out(cls, out, x, aux, dtype, original, grad, in_place):
        """out=: the caller's array for the gradient, of the input's shape (as given or as 2-D)."""
        if in_place:
            raise _invalid("out= and in_place=True both say where the gradient goes: pass one of them")
        if not grad:
            raise _invalid("out= was given with grad=False: there is no gradient to write")
        cls._writable(out, dtype, "out=", "out")
        shape = np.shape(original)
        if out.shape != x.shape and out.shape != shape:
            raise _invalid(f"out: expected shape {shape}, got {out.shape}")
        if out.ctypes.data == x.ctypes.data:
            return  # the input itself: the library computes in place
        for other, what in ((x, "the input"), (aux, "the targets or labels")):
            if other is not None and np.may_share_memory(out, other):
                raise _invalid(f"out overlaps {what}: the gradient would overwrite values still to be read")

    @staticmethod
    def _weights(w, c, name):
        if w is None:
            return None
        w = np.require(np.asarray(w, dtype=np.float32), requirements=["C_CONTIGUOUS", "ALIGNED"])
        if w.shape != (c,):
            raise _invalid(f"{name}: expected {c} values, got shape {w.shape}")
        return w

    @staticmethod
    def _layout(x, name):
        """(n, c, inner, the rows' shape) of a softmax input: [n, c], or PyTorch's (N, C, d1, ..., dK),
        which the library reads as [N][C][S] with S = d1·…·dK (clxent_ex.inner), rows shaped
        (N, d1, ..., dK)."""
        if x.ndim == 2:
            n, c = x.shape
            return n, c, 0, None
        n, c, spatial = x.shape[0], x.shape[1], x.shape[2:]
        inner = 1
        for d in spatial:
            inner *= d
        if inner == 0:
            raise _invalid(f"{name}: shape {x.shape} has an empty spatial dimension (d1·…·dK = 0)")
        return n, c, inner, (n,) + spatial

    def _run(self, fn, n, c, x, aux, opts, code, grad, in_place, lse, bias_grad, dtype, values, out, original,
             inner=0, rows_shape=None, argmax=False, correct=False):
        if out is not None:
            self._out(out, x, aux, dtype, original, grad, in_place)
            g = out
        elif in_place:
            g = x
        elif grad:
            g = _POOL.empty(x.shape, x.dtype, x.nbytes)
        else:
            g = None
        if code == 2:  # "none": one loss per row or value, returned
            loss = np.empty(values, dtype=np.float32)
            loss_at = loss.ctypes.data
        else:
            loss, loss_at = None, self._loss_at
        argmax_out = hits = None
        if lse or bias_grad or inner or argmax:
            lse_out = np.empty(values, dtype=np.float32) if lse else None  # softmax: values = the rows
            bias_out = np.empty(c, dtype=np.float32) if bias_grad else None
            if argmax:
                argmax_out = np.empty(values, dtype=np.int32)
                hits = ctypes.c_uint64() if correct else None
            ex = _Ex(_DTYPES[dtype], _ptr(lse_out), _ptr(bias_out), _ptr(argmax_out),
                     None if hits is None else ctypes.addressof(hits), inner)
        else:
            lse_out = bias_out = None
            ex = _EX.get(dtype) or _EX.setdefault(dtype, _Ex(_DTYPES[dtype], None, None))
        st = fn(self._ctx, n, c, x.ctypes.data, aux.ctypes.data, opts, ex, loss_at,
                None if g is None else g.ctypes.data)
        if st:
            raise _error(st, _lib.clxent_last_error(self._ctx).decode())
        if rows_shape is not None:  # (N, C, d1, ...): the rows' results shaped (N, d1, ...)
            loss = None if loss is None else loss.reshape(rows_shape)
            lse_out = None if lse_out is None else lse_out.reshape(rows_shape)
            argmax_out = None if argmax_out is None else argmax_out.reshape(rows_shape)
        r = _result(Result, (self._loss.value if loss is None else loss, g, lse_out, bias_out))
        if argmax:
            r.argmax = argmax_out
            if hits is not None:
                r.correct = hits.value
        return r

    # ---------------------------------------------------------------- losses

    def softmax_xent(self, logits, labels, *, reduction="mean", ignore_index=-100, class_weight=None,
                     label_smoothing=0.0, z_loss=0.0, softcap=0.0, grad=True, in_place=False, lse=False,
                     bias_grad=False, argmax=False, dtype=None, out=None, grad_output=None, mean_denominator=None):
        """Softmax cross-entropy with class-index labels, fused with its gradient.

        logits [n, c] float32/float16 (or uint16 bfloat16 bits with dtype="bfloat16"); labels [n]
        ints in [0, c) or ignore_index. Or PyTorch's layout: logits (N, C, d1, ..., dK), labels
        (N, d1, ..., dK), read in place (no transposed copy) with rows r = (i, d1, ..., dK); loss
        (none) and lse then have the labels' shape, grad the logits', and mean counts every
        (i, d1, ..., dK) not ignored (weighted by w_y), as torch.nn.functional.cross_entropy. loss_i = sum_j tau_j (lse_i - u_j) + z_loss * lse_i^2 with
        u = softcap*tanh(z/softcap) (or z), tau_j = w_j ((1-eps) [j == y_i] + eps/c);
        grad = scale * (a * sum(tau) - tau) (+ 2 z_loss lse a) times du/dz. mean divides by the
        sum of w_{y_i} over the rows counted (PyTorch). in_place writes the gradient into logits,
        out= into the caller's array. Returns Result(loss, grad, lse, bias_grad); argmax=True also
        sets its .argmax (each row's argmax of the logits z, before softcap: the first max, or the
        row's first NaN, as numpy.argmax; shaped like lse) and .correct (the rows not ignored whose
        argmax is their label), found in the same pass.
        Logits may be (N, C, d1, ..., dK) with labels (N, d1, ..., dK) (PyTorch's layout, read in
        place): rows (i, d1, ..., dK); loss (none) and lse come back shaped (N, d1, ..., dK).

        grad_output: the upstream gradient, None (1), one number for "mean" and "sum", or one float32
        value per row for "none" (the loss's shape; row i's gradient times g_i); finite. The loss is
        not scaled.
        mean_denominator: "mean" only, None or a positive number D: the loss (z-loss terms too) and
        the gradient divide by D instead of the sum of w_{y_i}; rows all ignored then give loss 0."""
        dtype, x = self._input(logits, "logits", dtype, spatial=True)
        if in_place:
            self._in_place(logits, x, dtype, "logits")
        n, c, inner, rows_shape = self._layout(x, "logits")
        rows = n * inner if inner else n
        if rows_shape is not None and np.shape(labels) != rows_shape:
            raise _invalid(f"labels: expected shape {rows_shape} for logits of shape {x.shape}, got "
                           f"{np.shape(labels)}")
        y = _labels(labels, rows, c)
        code = _reduction(reduction)
        if type(ignore_index) is not int or not _INT32_MIN <= ignore_index <= _INT32_MAX:
            ignore_index = _int32(ignore_index, "ignore_index")
        w = None if class_weight is None else self._weights(class_weight, c, "class_weight")
        g = _upstream(grad_output, code, rows_shape or (n,))
        opts = _opts(code, ignore_index, w, label_smoothing, z_loss, softcap, None, g,
                     _denominator(mean_denominator, code))
        return self._run(_lib.clxent_softmax_xent_ex, n, c, x, y, opts, code, grad, in_place, lse, bias_grad,
                         dtype, rows, out, logits, inner, rows_shape, bool(argmax), True)

    def linear_xent(self, hidden, weight, labels, bias=None, *, reduction="mean", ignore_index=-100,
                    class_weight=None, label_smoothing=0.0, z_loss=0.0, softcap=0.0, grad_hidden=True,
                    grad_weight=True, grad_bias=None, lse=False, dtype=None):
        """A linear layer fused with the softmax cross-entropy (a language model's head), never storing
        the logits: z = hidden @ weight.T + bias, then softmax_xent(z, labels, ...) with every option.

        hidden [n, d], weight [v, d] (row j: class j, as torch.nn.Linear's), bias [v] or None: float32,
        float16, or uint16 bfloat16 bits with dtype="bfloat16" (all three of one type; sums in
        float32); labels [n] ints in [0, v) or ignore_index. grad_hidden, grad_weight, grad_bias:
        whether to return dJ/dhidden [n, d], dJ/dweight [v, d], dJ/dbias [v] in the inputs' type
        (grad_bias defaults to True when a bias is given); lse=True also returns each row's
        log-sum-exp (float32). Returns LinearResult(loss, grad_hidden, grad_weight, grad_bias, lse)."""
        storage = self._storage(hidden, dtype)
        bits = dtype is not None
        h = self._matrix(hidden, "hidden", storage, bits)
        w = self._matrix(weight, "weight", storage, bits)
        n, d = h.shape
        v = w.shape[0]
        if w.shape[1] != d:
            raise _invalid(f"weight: expected [v, {d}] to match hidden's {d} columns, got shape {w.shape}")
        b = None
        if bias is not None:
            b = self._matrix(bias, "bias", storage, bits).reshape(-1)
            if b.shape != (v,):
                raise _invalid(f"bias: expected {v} values, got shape {np.shape(bias)}")
        if grad_bias is None:
            grad_bias = bias is not None
        y = _labels(labels, n, v)
        code = _reduction(reduction)
        ignore_index = _int32(ignore_index, "ignore_index")
        cw = None if class_weight is None else self._weights(class_weight, v, "class_weight")
        opts = _opts(code, ignore_index, cw, label_smoothing, z_loss, softcap, None)
        gh = np.empty((n, d), h.dtype) if grad_hidden else None
        gw = np.empty((v, d), h.dtype) if grad_weight else None
        gb = np.empty(v, h.dtype) if grad_bias else None
        lse_out = np.empty(n, np.float32) if lse else None
        loss = np.empty(n if code == 2 else 1, np.float32)
        ex = _Ex(_DTYPES[storage], _ptr(lse_out), None)
        st = _lib.clxent_linear_xent_ex(self._ctx, n, d, v, h.ctypes.data, w.ctypes.data, _ptr(b), y.ctypes.data,
                                        opts, ex, loss.ctypes.data, _ptr(gh), _ptr(gw), _ptr(gb))
        self._check(st)
        return _result(LinearResult, (loss if code == 2 else float(loss[0]), gh, gw, gb, lse_out))

    def softmax_xent_soft(self, logits, targets, *, reduction="mean", class_weight=None, label_smoothing=0.0,
                          z_loss=0.0, softcap=0.0, grad=True, in_place=False, lse=False, bias_grad=False,
                          argmax=False, dtype=None, out=None, grad_output=None, mean_denominator=None):
        """Softmax cross-entropy with dense targets t [n, c] of the logits' storage type:
        loss_i = -sum_j tau_j ln a_ij, tau_j = w_j ((1-eps) t_ij + eps/c); mean divides by n
        (by mean_denominator if given). Logits and targets may be (N, C, d1, ..., dK) (PyTorch's
        probabilities target): rows (i, d1, ..., dK), mean divides by N·d1·…·dK; loss (none) and lse
        shaped (N, d1, ..., dK). grad_output as for softmax_xent (one value per row for "none").
        argmax=True sets the Result's .argmax as softmax_xent does (.correct stays None)."""
        given = dtype
        dtype, x = self._input(logits, "logits", dtype, spatial=True)
        if in_place:
            self._in_place(logits, x, dtype, "logits")
        t = self._aux(targets, "targets", dtype, given, x.shape, spatial=True)
        n, c, inner, rows_shape = self._layout(x, "logits")
        code = _reduction(reduction)
        w = None if class_weight is None else self._weights(class_weight, c, "class_weight")
        g = _upstream(grad_output, code, rows_shape or (n,))
        opts = _opts(code, -100, w, label_smoothing, z_loss, softcap, None, g, _denominator(mean_denominator, code))
        return self._run(_lib.clxent_softmax_xent_soft_ex, n, c, x, t, opts, code, grad, in_place, lse,
                         bias_grad, dtype, n * inner if inner else n, out, logits, inner, rows_shape, bool(argmax))

    def _binary(self, fn, x, targets, reduction, pos_weight, grad, in_place, bias_grad, dtype, out, grad_output,
                mean_denominator):
        shape = np.shape(x)
        given = dtype
        original = x
        dtype, x = self._input(x, "input", dtype, vector_is_column=True)
        if in_place:
            self._in_place(original, x, dtype, "input")
        t = self._aux(targets, "targets", dtype, given, x.shape, vector_is_column=True)
        n, c = x.shape
        code = _reduction(reduction)
        pw = self._weights(pos_weight, c, "pos_weight")
        g = _upstream(grad_output, code, shape)
        opts = _opts(code, -100, None, 0.0, 0.0, 0.0, pw, g, _denominator(mean_denominator, code))
        r = self._run(fn, n, c, x, t, opts, code, grad, in_place, False, bias_grad, dtype, n * c, out, original)
        if code == 2:
            r = r._replace(loss=r.loss.reshape(shape))
        return r if r.grad is None or r.grad is out else r._replace(grad=r.grad.reshape(shape))

    def sigmoid_xent(self, logits, targets, *, reduction="mean", pos_weight=None, grad=True, in_place=False,
                     bias_grad=False, dtype=None, out=None, grad_output=None, mean_denominator=None):
        """Binary cross-entropy with the sigmoid fused, elementwise over [n] or [n, c]:
        loss = p y softplus(-z) + (1-y) softplus(z) (p = pos_weight per column, 1 by default),
        grad = scale (a (1-y) - p y (1-a)); mean divides by the number of values, or by
        mean_denominator if given. grad_output: None, one number ("mean", "sum"), or for "none" one
        value per loss value (the input's shape): each value's gradient times its g."""
        return self._binary(_lib.clxent_sigmoid_xent_ex, logits, targets, reduction, pos_weight, grad, in_place,
                            bias_grad, dtype, out, grad_output, mean_denominator)

    def bce(self, probs, targets, *, reduction="mean", pos_weight=None, grad=True, in_place=False,
            bias_grad=False, dtype=None, out=None, grad_output=None, mean_denominator=None):
        """Binary cross-entropy from probabilities a in [0, 1] (PyTorch's BCELoss, logs clamped at -100):
        loss = -[p y ln a + (1-y) ln(1-a)], grad = scale (a (1-y) - p y (1-a)) / max(a(1-a), 1e-12).
        grad_output and mean_denominator as for sigmoid_xent."""
        return self._binary(_lib.clxent_bce_ex, probs, targets, reduction, pos_weight, grad, in_place, bias_grad,
                            dtype, out, grad_output, mean_denominator)

    def _information(self, fn, p, q):
        p = p if _plain(p, "float32") else self._matrix(p, "p", "float32", False)
        n, c = p.shape
        args = [self._ctx, n, c, p.ctypes.data]
        if q is not None:
            q = q if _plain(q, "float32") else self._matrix(q, "q", "float32", False)
            if q.shape != p.shape:
                raise _invalid(f"q: expected shape {p.shape}, got {q.shape}")
            args.append(q.ctypes.data)
        out = np.empty(n, dtype=np.float32)
        self._check(fn(*args, out.ctypes.data))
        return out

    def entropy(self, p):
        """H(p) = -sum p ln p per row of p [n, c] (0 ln 0 = 0)."""
        return self._information(_lib.clxent_entropy, p, None)

    def cross_entropy(self, p, q):
        """H(p, q) = -sum p ln q per row."""
        return self._information(_lib.clxent_cross_entropy, p, q)

    def kl_div(self, p, q):
        """D(p || q) = sum p ln(p/q) = H(p, q) - H(p) per row."""
        return self._information(_lib.clxent_kl_div, p, q)
