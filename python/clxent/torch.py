"""clxent.torch: clxent's fused losses as PyTorch losses (CPU tensors; PyTorch 1.13 and 2.x).

    import clxent.torch as ct
    loss_fn = ct.CrossEntropyLoss(label_smoothing=0.1)   # torch.nn.CrossEntropyLoss's arguments
    loss = loss_fn(model(x), y)                          # (N, C) logits, (N,) int64 classes
    loss.backward()                                      # the gradient computed in the forward

cross_entropy and binary_cross_entropy_with_logits take torch.nn.functional's arguments and follow
its semantics (class-index and probability targets, weight, ignore_index, reduction,
label_smoothing; pos_weight and weight for the binary loss), plus clxent's z_loss and softcap. Each
forward computes the loss and the gradient in one fused pass of the C library; backward only
multiplies that gradient by grad_output (a scalar for "mean" and "sum", one value per row or
element for "none"), or passes it on as it is when grad_output is exactly 1.

Tensors: CPU only (clxent computes on its OpenCL device from host memory: a CUDA tensor raises
ValueError). float32, float16 and bfloat16 inputs are read where they are, without a copy, when
they are contiguous, (N, C, d1, ..., dK) inputs included (the library reads the classes through
a stride); a non-contiguous input is copied into a contiguous one first. The gradient is written
straight into a new torch tensor.
The loss has the input's dtype, as with torch (computed in float32 inside).

linear_cross_entropy(input, weight, target, bias=None, ...) is F.cross_entropy(F.linear(input,
weight, bias), target, weight=class_weight, ...) computed by Context.linear_xent, the fused linear
layer + cross-entropy that never stores the (rows x classes) logits (a language model's head):
input (N, d) or (B, T, d), weight (C, d), bias (C,) or None, target (N,) or (B, T) class indices.
Its forward computes the loss and the gradients of input, weight and bias (those that require
grad) in one call; backward multiplies them by grad_output (skipped when it is exactly 1).
reduction="none" is forward-only: its per-row grad_output cannot be applied after the fact to
weight's gradient (a sum over the rows), so it raises NotImplementedError when a gradient is
wanted. LinearCrossEntropyLoss is the module, with Liger-Kernel's forward(lin_weight, _input,
target, bias=None) argument order.

Not differentiated (a clear error rather than a silently missing gradient): probability targets,
class weights, pos_weight and the binary loss's weight that require grad; and double backward.
Each thread uses its own clxent.Context, made on first use ($CLXENT_DEVICE or the default device);
set_context() replaces it, and every function and module takes a context= of its own.
"""
import math
import operator
import threading

try:
    import torch
except ImportError as _e:
    raise ImportError("clxent.torch needs PyTorch: pip install ./python[torch] (or Debian's python3-torch)") from _e

import numpy as np
from torch.nn import _reduction as _legacy

from . import Context, LabelRange

__all__ = ["cross_entropy", "binary_cross_entropy_with_logits", "linear_cross_entropy", "CrossEntropyLoss",
           "BCEWithLogitsLoss", "LinearCrossEntropyLoss", "get_context", "set_context"]

_local = threading.local()


def get_context():
    """This thread's clxent.Context: the one set_context() gave, else one made on first use
    (device $CLXENT_DEVICE, else the library's default)."""
    ctx = getattr(_local, "context", None)
    if ctx is None:
        ctx = _local.context = Context()
    return ctx


def set_context(context):
    """Makes `context` (a clxent.Context) this thread's context for clxent.torch; None goes back to
    one made on first use. A Context is for one thread at a time."""
    if context is not None and not isinstance(context, Context):
        raise TypeError(f"set_context: expected a clxent.Context or None, got {type(context).__name__}")
    _local.context = context


# ------------------------------------------------------------------------------------------ tensors

_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def _cpu(t, name):
    if t.device.type != "cpu":
        raise ValueError(f"{name} is a {t.device.type} tensor: clxent.torch takes CPU tensors only (clxent computes "
                         f"on its OpenCL device from host memory); move it with .cpu()")


def _no_grad(t, name, why=""):
    if t is not None and t.requires_grad:
        raise ValueError(f"{name} requires grad, but clxent.torch does not differentiate with respect to {name}"
                         f"{why}: pass {name}.detach() (or use torch.nn.functional)")


def _floating_input(input):
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input: expected a torch.Tensor, got {type(input).__name__}")
    _cpu(input, "input")
    if input.dtype not in _FLOATS:
        raise TypeError(f"input is {input.dtype}: clxent computes on float32, float16 and bfloat16 tensors (convert "
                        f"it, e.g. input.float())")


def _array(t):
    """The NumPy array over a contiguous CPU tensor's memory (no copy): float32 and float16 as they
    are, bfloat16 as its bits in uint16 (passed with dtype="bfloat16")."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def _storage(t):
    return "bfloat16" if t.dtype == torch.bfloat16 else None


def _float32(t, name, size):
    """Class weights or pos_weight: size float32 values for the library (a small copy)."""
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t)
    _cpu(t, name)
    _no_grad(t, name)
    if not t.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {t.dtype}")
    if t.shape != (size,):
        raise ValueError(f"{name}: expected {size} values (one per class), got shape {tuple(t.shape)}")
    return t.detach().to(torch.float32).contiguous().numpy()


def _index(ignore_index):
    """ignore_index as a Python int: an integer (or integer 0-d tensor), as torch requires; 1.5 was
    truncated to class 1."""
    try:
        return operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"ignore_index must be an integer, not {type(ignore_index).__name__} "
                        f"{ignore_index!r}") from None


def _reduction(size_average, reduce, reduction):
    if size_average is not None or reduce is not None:
        reduction = _legacy.legacy_get_string(size_average, reduce)
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


def _loss_tensor(loss, dtype, shape=None):
    """The library's float32 loss (a float, or a NumPy array for "none") as a tensor of dtype."""
    if shape is None:
        return torch.tensor(loss, dtype=torch.float32).to(dtype)
    return torch.from_numpy(loss).reshape(shape).to(dtype)


def _empty_loss(reduction, dtype, shape):
    """What torch returns for no rows: NaN for mean (0/0), 0 for sum, an empty tensor for none."""
    if reduction == "none":
        return torch.zeros(shape, dtype=dtype)
    return torch.tensor(float("nan") if reduction == "mean" else 0.0, dtype=dtype)


# ------------------------------------------------------------------------------ the autograd node

def _no_double_backward():
    """Refuses create_graph=True in a backward: the gradient would have to be differentiable itself,
    and it is a constant computed by the fused forward. (once_differentiable only notices when
    grad_output requires grad, and otherwise returns a gradient silently cut off from the input.)"""
    if torch.is_grad_enabled():
        raise RuntimeError("clxent.torch: double backward (create_graph=True) is not supported: the gradient "
                           "comes from the fused forward and is not differentiable; use torch.nn.functional "
                           "for higher-order gradients")


class _Fused(torch.autograd.Function):
    """loss = run(); its gradient, computed by the same fused call, is saved (not the input) and
    backward multiplies it by grad_output: one scalar for mean/sum, and for "none" one value per
    row of the 2-D layout (softmax: grad_output is [rows], broadcast over the classes) or per
    element (binary: grad_output has the gradient's shape).

    A scalar grad_output of exactly 1 (loss.backward() on the loss itself) returns the saved
    gradient as it is: the multiplication would be a whole extra pass over an input-sized tensor
    (measured: about as long as the fused forward itself). The saved tensor is never written, so
    backward with retain_graph=True stays right; saved with save_for_backward, it is released when
    the graph is, and autograd can then hand it on as the input's .grad without a copy."""

    @staticmethod
    def forward(ctx, input, run):
        loss, grad, restore = run(True)
        ctx.save_for_backward(grad)
        ctx.restore, ctx.none = restore, run.none
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        _no_double_backward()
        (g,) = ctx.saved_tensors
        if ctx.none:  # one value per row (softmax: broadcast over the classes) or per element (binary)
            # softmax: [N] or (N, d1, ...) against the gradient's (N, C) or (N, C, d1, ...)
            per = g.shape if grad_output.numel() == g.numel() else (g.shape[0], 1) + tuple(g.shape[2:])
            g = g * grad_output.reshape(per).to(g.dtype)
        elif grad_output.item() != 1.0:
            g = g * grad_output.to(g.dtype)
        return ctx.restore(g), None


class _Run:
    """The call forward makes (a callable, so _Fused.apply sees no tensors but the input)."""

    def __init__(self, fn, none):
        self.fn, self.none = fn, none

    def __call__(self, grad):
        return self.fn(grad)


def _apply(input, fn, reduction):
    """Through autograd when a gradient is wanted (grad mode on and input.requires_grad), else the
    fused call without its gradient."""
    if torch.is_grad_enabled() and input.requires_grad:
        return _Fused.apply(input, _Run(fn, reduction == "none"))
    return fn(False)[0]


# --------------------------------------------------------------------------- softmax cross-entropy

def _as_rows(input, target, probabilities):
    """THE layout adapter: (logits as the binding takes them, contiguous; targets; the shape of
    "none"'s loss; restore(grad) -> the gradient in input's shape).

    (N, C) is used as it is (copied only when not contiguous); (C,) is one row. (N, C, d1, ..., dK)
    is passed as it is too: the C library reads the classes through a stride (clxent_ex.inner),
    so there is no transposed copy, and the gradient comes back in input's layout."""
    c = input.shape[0] if input.dim() == 1 else input.shape[1]
    if input.dim() == 1:
        shape = input.shape
        x = input.reshape(1, c)
        t = target.reshape(1, c) if probabilities else target.reshape(1)
        return x.contiguous(), t, (), lambda g: g.reshape(shape)
    return input.contiguous(), target, input.shape[:1] + input.shape[2:], lambda g: g


def _softmax_call(input, target, probabilities, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
                  context):
    def fn(grad):
        x, t, none_shape, restore = _as_rows(input, target, probabilities)
        if x.numel() == 0:
            if not probabilities and t.numel() and bool((t != ignore_index).any()):
                # rows but no classes (C = 0): every label that is not ignore_index is out of range,
                # as torch's IndexError says; the library is not called, so it would go unnoticed
                bad = int(t[t != ignore_index].reshape(-1)[0])
                raise LabelRange(2, f"target holds class {bad}, but input has no classes (C = 0): labels must be in "
                                    f"[0, 0) or ignore_index ({ignore_index})")
            g = torch.zeros_like(x) if grad else None
            return _empty_loss(reduction, input.dtype, none_shape), g, restore
        ctx = context if context is not None else get_context()
        g = torch.empty_like(x, memory_format=torch.contiguous_format) if grad else None
        kw = dict(reduction=reduction, class_weight=weight, label_smoothing=label_smoothing, z_loss=z_loss,
                  softcap=softcap, grad=grad, dtype=_storage(x), out=None if g is None else _array(g))
        if probabilities:
            r = ctx.softmax_xent_soft(_array(x), _array(t.to(x.dtype).contiguous()), **kw)
        else:
            r = ctx.softmax_xent(_array(x), t.detach().numpy(), ignore_index=ignore_index, **kw)
        loss = _loss_tensor(r.loss, input.dtype, none_shape if reduction == "none" else None)
        return loss, g, restore
    return fn


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                  label_smoothing=0.0, *, z_loss=0.0, softcap=0.0, context=None):
    """torch.nn.functional.cross_entropy computed by clxent, with its arguments and semantics.

    input: (N, C), (C,) or (N, C, d1, ..., dK) float32/float16/bfloat16 logits on the CPU.
    target: class indices of any integer dtype, shape (N,), () or (N, d1, ..., dK), values in
    [0, C) or ignore_index; or class probabilities of input's shape (converted to input's dtype).
    weight: C class weights; mean divides by the sum of the counted rows' weights, as torch.
    label_smoothing ε: targets (1-ε)·t + ε/C, combined with the weights as torch does.
    z_loss λ (clxent): + λ·lse² per row, unweighted (mean: over the rows counted).
    softcap s (clxent): logits z → s·tanh(z/s) before everything else.
    context: the clxent.Context to use (default: this thread's, see get_context)."""
    reduction = _reduction(size_average, reduce, reduction)
    ignore_index = _index(ignore_index)
    _floating_input(input)
    if input.dim() == 0:
        raise ValueError("cross_entropy: input must have the classes in dimension 0 (unbatched) or 1, got a 0-d tensor")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target: expected a torch.Tensor, got {type(target).__name__}")
    _cpu(target, "target")
    probabilities = target.shape == input.shape
    c = input.shape[0] if input.dim() == 1 else input.shape[1]
    if probabilities:
        if not target.is_floating_point():
            raise TypeError(f"target has input's shape, so it holds class probabilities, which must be floating point "
                            f"(got {target.dtype})")
        _no_grad(target, "target", " (probabilities)")
        if int(ignore_index) >= 0:  # torch refuses it too, rather than computing as if it were not given
            raise ValueError(f"ignore_index = {ignore_index} is not supported with probability targets (target has "
                             f"input's shape); leave it at its default (-100)")
    else:
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise TypeError(f"target: class indices must be an integer tensor (got {target.dtype}); probabilities "
                            f"must have input's shape {tuple(input.shape)}")
        expected = () if input.dim() == 1 else input.shape[:1] + input.shape[2:]
        if target.shape != expected:
            raise ValueError(f"target: expected class indices of shape {tuple(expected)} for input of shape "
                             f"{tuple(input.shape)}, got {tuple(target.shape)}")
        if not -2 ** 31 <= int(ignore_index) < 2 ** 31:
            raise ValueError(f"ignore_index = {ignore_index} is outside int32, clxent's label type")
    w = _float32(weight, "weight", c)
    fn = _softmax_call(input, target, probabilities, w, int(ignore_index), reduction, float(label_smoothing),
                       float(z_loss), float(softcap), context)
    return _apply(input, fn, reduction)


# --------------------------------------------------------------------------- binary cross-entropy

def _pos_weight_columns(pos_weight, shape):
    """pos_weight as one value per element of input's last dimension: a tensor that broadcasts to
    input's shape along the last dimension only (shape (L,), (1, L), (1,), () ...). clxent's
    pos_weight is per column: one varying along other dimensions is not supported."""
    if pos_weight is None:
        return None
    if not isinstance(pos_weight, torch.Tensor):
        pos_weight = torch.as_tensor(pos_weight)
    _cpu(pos_weight, "pos_weight")
    _no_grad(pos_weight, "pos_weight")
    last = shape[-1] if len(shape) else 1
    try:
        torch.broadcast_shapes(pos_weight.shape, shape)
    except RuntimeError as e:
        raise ValueError(f"pos_weight of shape {tuple(pos_weight.shape)} does not broadcast to input's shape "
                         f"{tuple(shape)}: {e}") from None
    if pos_weight.dim() > len(shape):
        raise ValueError(f"pos_weight of shape {tuple(pos_weight.shape)} has more dimensions than input "
                         f"{tuple(shape)}")
    if any(s != 1 for s in pos_weight.shape[:-1]):
        raise NotImplementedError(f"pos_weight of shape {tuple(pos_weight.shape)} varies along a dimension other "
                                  f"than the last; clxent's pos_weight is one value per element of the last "
                                  f"dimension")
    pw = pos_weight.reshape(-1)
    if pw.numel() != last:
        pw = pw.expand(last)
    if not pw.is_floating_point():
        raise TypeError(f"pos_weight: expected a floating-point tensor, got {pos_weight.dtype}")
    return pw.detach().to(torch.float32).contiguous().numpy()


def _binary_call(input, target, weight, reduction, pos_weight, context):
    shape = input.shape
    last = shape[-1] if len(shape) else 1

    def fn(grad):
        x = input.reshape(-1, last).contiguous() if last else input.reshape(0, 0)
        restore = lambda g: g.reshape(shape)  # noqa: E731
        if x.numel() == 0:
            return _empty_loss(reduction, input.dtype, shape), (torch.zeros_like(x) if grad else None), restore
        t = target.reshape(x.shape).to(x.dtype).contiguous()
        ctx = context if context is not None else get_context()
        g = torch.empty_like(x, memory_format=torch.contiguous_format) if grad else None
        red = reduction if weight is None else "none"  # weighted: the elements' losses, weighted here
        r = ctx.sigmoid_xent(_array(x), _array(t), reduction=red, pos_weight=pos_weight, grad=grad,
                             dtype=_storage(x), out=None if g is None else _array(g))
        if weight is None:
            return _loss_tensor(r.loss, input.dtype, shape if reduction == "none" else None), g, restore
        # torch's weight multiplies each element's loss before the reduction (mean: over all
        # elements), so it multiplies each element's gradient likewise; the library's "none"
        # gradient is the unscaled sum's.
        w = weight.detach().to(torch.float32).broadcast_to(shape).reshape(x.shape)
        losses = torch.from_numpy(r.loss).reshape(x.shape) * w
        if reduction == "mean":
            w = w / x.numel()
        if g is not None:
            g = (g.to(torch.float32) * w).to(g.dtype) if g.dtype != torch.float32 else g.mul_(w)
        if reduction == "none":
            return losses.reshape(shape).to(input.dtype), g, restore
        total = losses.sum()
        return (total / x.numel() if reduction == "mean" else total).to(input.dtype), g, restore
    return fn


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None, reduction="mean",
                                     pos_weight=None, *, context=None):
    """torch.nn.functional.binary_cross_entropy_with_logits computed by clxent, elementwise over
    input of any shape, with its arguments and semantics. target: input's shape (converted to
    input's dtype). pos_weight: one value per element of the last dimension (anything that
    broadcasts to input along the last dimension only). weight: any tensor that broadcasts to
    input, multiplying each element's loss (and gradient) before the reduction."""
    reduction = _reduction(size_average, reduce, reduction)
    _floating_input(input)
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target: expected a torch.Tensor, got {type(target).__name__}")
    _cpu(target, "target")
    if target.shape != input.shape:
        raise ValueError(f"Target size ({tuple(target.shape)}) must be the same as input size ({tuple(input.shape)})")
    if not target.is_floating_point():
        raise TypeError(f"target: expected a floating-point tensor of probabilities, got {target.dtype}")
    _no_grad(target, "target")
    if weight is not None:
        if not isinstance(weight, torch.Tensor):
            weight = torch.as_tensor(weight)
        _cpu(weight, "weight")
        _no_grad(weight, "weight")
        try:
            fits = torch.broadcast_shapes(weight.shape, input.shape) == input.shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(f"weight of shape {tuple(weight.shape)} does not broadcast to input's shape "
                             f"{tuple(input.shape)}")
    pw = _pos_weight_columns(pos_weight, input.shape)
    return _apply(input, _binary_call(input, target, weight, reduction, pw, context), reduction)


# ------------------------------------------------------------------- linear layer + cross-entropy

def _from_array(a, dtype, shape):
    """A tensor of dtype over the library's NumPy result (bfloat16: uint16 bits), reshaped."""
    if dtype == torch.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16).reshape(shape)
    return torch.from_numpy(a).reshape(shape)


class _FusedLinear(torch.autograd.Function):
    """loss = run(); the gradients of input, weight and bias (None where not wanted) come from the
    same fused call and are saved; backward multiplies them by the scalar grad_output, or returns
    them as they are when it is exactly 1 (as _Fused)."""

    @staticmethod
    def forward(ctx, input, weight, bias, run):
        loss, gh, gw, gb = run(True)
        ctx.save_for_backward(gh, gw, gb)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        _no_double_backward()
        grads = ctx.saved_tensors
        if grad_output.item() != 1.0:
            grads = [None if g is None else g * grad_output.to(g.dtype) for g in grads]
        return grads[0], grads[1], grads[2], None


def linear_cross_entropy(input, weight, target, bias=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
                         *, class_weight=None, z_loss=0.0, softcap=0.0, context=None):
    """F.cross_entropy(F.linear(input, weight, bias), target, weight=class_weight, ignore_index=...,
    reduction=..., label_smoothing=...) computed by clxent's fused linear_xent, never storing the
    logits. input: (N, d) or (B, T, d) (leading dimensions flattened; "none"'s loss gets them back);
    weight: (C, d) (torch.nn.Linear's); bias: (C,) or None; all three CPU float32, float16 or
    bfloat16 of one dtype. target: integer class indices of input.shape[:-1], in [0, C) or
    ignore_index. class_weight, z_loss, softcap as cross_entropy's weight, z_loss, softcap.
    Gradients of input, weight and bias (whichever require grad) are computed by the forward.
    reduction="none" under a gradient raises NotImplementedError (use it under torch.no_grad())."""
    reduction = _reduction(None, None, reduction)
    ignore_index = _index(ignore_index)
    _floating_input(input)
    for t, name in ((weight, "weight"), (bias, "bias")):
        if t is None and name == "bias":
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        _cpu(t, name)
        if t.dtype != input.dtype:
            raise TypeError(f"{name} is {t.dtype} but input is {input.dtype}: clxent's linear_cross_entropy takes "
                            f"input, weight and bias of one dtype (as F.linear)")
    if input.dim() < 2:
        raise ValueError(f"linear_cross_entropy: input must be (N, d) or (B, T, d), got shape {tuple(input.shape)}")
    d = input.shape[-1]
    if weight.dim() != 2 or weight.shape[1] != d:
        raise ValueError(f"weight: expected (C, {d}) for input of shape {tuple(input.shape)}, got "
                         f"{tuple(weight.shape)}")
    c = weight.shape[0]
    if bias is not None and bias.shape != (c,):
        raise ValueError(f"bias: expected shape ({c},), got {tuple(bias.shape)}")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target: expected a torch.Tensor, got {type(target).__name__}")
    _cpu(target, "target")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"target: class indices must be an integer tensor (got {target.dtype})")
    if target.shape != input.shape[:-1]:
        raise ValueError(f"target: expected class indices of shape {tuple(input.shape[:-1])} for input of shape "
                         f"{tuple(input.shape)}, got {tuple(target.shape)}")
    if not -2 ** 31 <= int(ignore_index) < 2 ** 31:
        raise ValueError(f"ignore_index = {ignore_index} is outside int32, clxent's label type")
    cw = _float32(class_weight, "class_weight", c)
    wants = [torch.is_grad_enabled() and t is not None and t.requires_grad for t in (input, weight, bias)]
    if reduction == "none" and any(wants):
        raise NotImplementedError("linear_cross_entropy: reduction='none' has no gradient in clxent.torch: a "
                                  "per-row grad_output cannot be applied after the fact to weight's gradient (a sum "
                                  "over the rows). Use 'mean' or 'sum', or call it under torch.no_grad() (or on "
                                  "tensors that do not require grad)")
    shape, dtype = input.shape, input.dtype

    def run(grad):
        n = math.prod(shape[:-1])  # not reshape(-1, d): with d = 0 the -1 is ambiguous
        x = input.reshape(n, d).contiguous()
        gh, gw, gb = (w and grad for w in wants)
        if n == 0:
            return (_empty_loss(reduction, dtype, shape[:-1]), torch.zeros(shape, dtype=dtype) if gh else None,
                    torch.zeros_like(weight) if gw else None, torch.zeros_like(bias) if gb else None)
        ctx = context if context is not None else get_context()
        r = ctx.linear_xent(_array(x), _array(weight.contiguous()),
                            target.detach().reshape(-1).numpy(), None if bias is None else _array(bias.contiguous()),
                            reduction=reduction, ignore_index=int(ignore_index), class_weight=cw,
                            label_smoothing=float(label_smoothing), z_loss=float(z_loss), softcap=float(softcap),
                            grad_hidden=gh, grad_weight=gw, grad_bias=gb, dtype=_storage(x))
        loss = _loss_tensor(r.loss, dtype, shape[:-1] if reduction == "none" else None)
        return (loss, None if r.grad_hidden is None else _from_array(r.grad_hidden, dtype, shape),
                None if r.grad_weight is None else _from_array(r.grad_weight, dtype, weight.shape),
                None if r.grad_bias is None else _from_array(r.grad_bias, dtype, (c,)))

    if any(wants):
        return _FusedLinear.apply(input, weight, bias, run)
    return run(False)[0]


# --------------------------------------------------------------------------------------- modules

class CrossEntropyLoss(torch.nn.CrossEntropyLoss):
    """torch.nn.CrossEntropyLoss computed by clxent: the same constructor arguments (weight a
    buffer, size_average/reduce the deprecated spellings of reduction), plus z_loss, softcap and
    context (a clxent.Context; default: the calling thread's). An instance of
    torch.nn.CrossEntropyLoss, so code that checks for one accepts it."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                 label_smoothing=0.0, *, z_loss=0.0, softcap=0.0, context=None):
        super().__init__(weight, size_average, ignore_index, reduce, reduction, label_smoothing)
        self.z_loss, self.softcap, self.context = float(z_loss), float(softcap), context

    def forward(self, input, target):
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing, z_loss=self.z_loss,
                             softcap=self.softcap, context=self.context)

    def extra_repr(self):
        return f"z_loss={self.z_loss}, softcap={self.softcap}" if self.z_loss or self.softcap else ""


class BCEWithLogitsLoss(torch.nn.BCEWithLogitsLoss):
    """torch.nn.BCEWithLogitsLoss computed by clxent: the same constructor arguments (weight and
    pos_weight buffers), plus context. An instance of torch.nn.BCEWithLogitsLoss."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None, *,
                 context=None):
        super().__init__(weight, size_average, reduce, reduction, pos_weight)
        self.context = context

    def forward(self, input, target):
        return binary_cross_entropy_with_logits(input, target, self.weight, reduction=self.reduction,
                                                pos_weight=self.pos_weight, context=self.context)


class LinearCrossEntropyLoss(torch.nn.Module):
    """linear_cross_entropy as a module holding only options; the layer's weight and bias are the
    forward's arguments, in Liger-Kernel's LigerFusedLinearCrossEntropyLoss order:
    forward(lin_weight, _input, target, bias=None), lin_weight (C, d), _input (N, d) or (B, T, d).
    z_loss is Liger's lse_square_scale; class_weight (a buffer) its ce_weight; softcap None or 0:
    none."""

    def __init__(self, ignore_index=-100, reduction="mean", label_smoothing=0.0, *, class_weight=None, z_loss=0.0,
                 softcap=None, context=None):
        super().__init__()
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, float(label_smoothing)
        self.z_loss, self.softcap, self.context = float(z_loss), float(softcap or 0.0), context
        self.register_buffer("class_weight", None if class_weight is None else torch.as_tensor(class_weight))

    def forward(self, lin_weight, _input, target, bias=None):
        return linear_cross_entropy(_input, lin_weight, target, bias, ignore_index=self.ignore_index,
                                    reduction=self.reduction, label_smoothing=self.label_smoothing,
                                    class_weight=self.class_weight, z_loss=self.z_loss, softcap=self.softcap,
                                    context=self.context)

    def extra_repr(self):
        return (f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
                f"label_smoothing={self.label_smoothing}, z_loss={self.z_loss}, softcap={self.softcap}")
