"""Context.linear_xent (the fused linear + cross-entropy) against a float64 NumPy reference, and
against PyTorch's F.linear + F.cross_entropy autograd in float64 where torch is installed."""
import numpy as np
import pytest

import clxent


@pytest.fixture(scope="module")
def ctx():
    with clxent.Context() as c:
        yield c


def ref_linear(h, w, b, y, cw=None, eps=0.0, zl=0.0, cap=0.0, ignore=-100, reduction="mean"):
    """z in float64 (rounded to float32, as the library's float32 product is compared with it), then
    the softmax cross-entropy of README's toolbox and the three gradients in float64."""
    z = (h.astype(np.float64) @ w.astype(np.float64).T + (0 if b is None else b)).astype(np.float32)
    z = z.astype(np.float64)
    n, v = z.shape
    u = cap * np.tanh(z / cap) if cap else z
    m = u.max(1, keepdims=True)
    lse = np.log(np.exp(u - m).sum(1)) + m[:, 0]
    a = np.exp(u - lse[:, None])
    wt = np.ones(v) if cw is None else cw.astype(np.float64)
    keep = y != ignore
    onehot = np.zeros((n, v))
    onehot[np.arange(n)[keep], y[keep]] = 1
    tau = wt[None, :] * ((1 - eps) * onehot + eps / v) * keep[:, None]
    ce = (tau * (lse[:, None] - u)).sum(1)
    rows = ce + zl * lse ** 2 * keep
    div = wt[y[keep]].sum() if reduction == "mean" else 1.0
    cnt = keep.sum() if reduction == "mean" else 1.0
    G = (a * tau.sum(1, keepdims=True) - tau) / div + 2 * zl / cnt * lse[:, None] * a * keep[:, None]
    if cap:
        G *= 1 - np.tanh(z / cap) ** 2
    J = ce.sum() / div + zl * (lse ** 2 * keep).sum() / cnt if reduction == "mean" else rows.sum()
    loss = rows if reduction == "none" else J
    return loss, G @ w.astype(np.float64), G.T @ h.astype(np.float64), G.sum(0)


def problem(n, d, v, seed, bias=True, ignore=0.0):
    r = np.random.default_rng(seed)
    h = r.uniform(-1, 1, (n, d)).astype(np.float32)
    w = r.uniform(-1, 1, (v, d)).astype(np.float32)
    b = r.uniform(-2, 2, v).astype(np.float32) if bias else None
    y = r.integers(0, v, n).astype(np.int64)
    y[r.random(n) < ignore] = -100
    return h, w, b, y


@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 3, 7), (33, 17, 600), (300, 8, 40)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_shapes(ctx, shape, reduction):
    h, w, b, y = problem(*shape, seed=sum(shape), ignore=0.2)
    got = ctx.linear_xent(h, w, y, b, reduction=reduction)
    want = ref_linear(h, w, b, y, reduction=reduction)
    np.testing.assert_allclose(got.loss, want[0], rtol=1e-4, atol=1e-5)
    for g, r in zip(got[1:4], want[1:]):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, r, rtol=1e-3, atol=1e-5)


def test_options(ctx):
    h, w, b, y = problem(21, 11, 530, seed=3, ignore=0.25)
    cw = np.random.default_rng(4).uniform(0, 2, 530).astype(np.float32)
    kw = dict(class_weight=cw, label_smoothing=0.2, z_loss=1e-3, softcap=3.0)
    got = ctx.linear_xent(h, w, y, b, **kw)
    want = ref_linear(h, w, b, y, cw=cw, eps=0.2, zl=1e-3, cap=3.0)
    np.testing.assert_allclose(got.loss, want[0], rtol=1e-4)
    for g, r in zip(got[1:4], want[1:]):
        np.testing.assert_allclose(g, r, rtol=1e-3, atol=1e-5)


def test_outputs_and_errors(ctx):
    h, w, b, y = problem(6, 4, 9, seed=5)
    r = ctx.linear_xent(h, w, y, grad_weight=False)
    assert r.grad_weight is None and r.grad_bias is None and r.grad_hidden.shape == (6, 4)
    r = ctx.linear_xent(h, w, y, b, grad_hidden=False, grad_weight=False)
    assert r.grad_hidden is None and r.grad_bias.shape == (9,)
    y[2] = 9
    with pytest.raises(clxent.LabelRange, match=r"labels\[2\] = 9"):
        ctx.linear_xent(h, w, y)
    y[2] = 0
    with pytest.raises(clxent.InvalidArgument, match="weight"):
        ctx.linear_xent(h, w[:, :3], y)
    with pytest.raises(clxent.InvalidType):  # 16-bit bits need dtype= to say which type
        ctx.linear_xent(h.view(np.uint16), w, y)
    r64 = ctx.linear_xent(h.astype(np.float64), w.astype(np.float64), y)  # converted, as softmax_xent does
    assert r64.loss == ctx.linear_xent(h, w, y).loss


def test_against_torch(ctx):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    h, w, b, y = problem(40, 16, 300, seed=6, ignore=0.1)
    cw = np.random.default_rng(7).uniform(0.5, 2, 300).astype(np.float32)
    got = ctx.linear_xent(h, w, y, b, class_weight=cw, label_smoothing=0.1)
    th, tw, tb = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (h, w, b))
    loss = F.cross_entropy(F.linear(th, tw, tb), torch.tensor(y), weight=torch.tensor(cw, dtype=torch.float64),
                           label_smoothing=0.1, ignore_index=-100)
    loss.backward()
    np.testing.assert_allclose(got.loss, loss.item(), rtol=1e-4)
    for g, t in zip(got[1:4], (th, tw, tb)):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-3, atol=1e-5)


def to_bf16(x):
    """float32 -> bfloat16 bits, round to nearest even (finite values)."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_storage(ctx, dtype):
    """16-bit arrays: the float32 call's loss on the same values, its gradients rounded once; lse."""
    h, w, b, y = problem(30, 20, 300, seed=8, ignore=0.2)
    if dtype == "float16":
        h16, w16, b16 = h.astype(np.float16), w.astype(np.float16), b.astype(np.float16)
        hf, wf, bf = h16.astype(np.float32), w16.astype(np.float32), b16.astype(np.float32)
        kw = {}
    else:
        h16, w16, b16 = to_bf16(h), to_bf16(w), to_bf16(b)
        hf, wf, bf = from_bf16(h16), from_bf16(w16), from_bf16(b16)
        kw = {"dtype": "bfloat16"}
    got = ctx.linear_xent(h16, w16, y, b16, label_smoothing=0.1, lse=True, **kw)
    ref = ctx.linear_xent(hf, wf, y, bf, label_smoothing=0.1, lse=True)
    assert got.loss == ref.loss
    np.testing.assert_array_equal(got.lse, ref.lse)
    for g, r in zip(got[1:4], ref[1:4]):
        assert g.dtype == h16.dtype
        np.testing.assert_array_equal(g, r.astype(np.float16) if dtype == "float16" else to_bf16(r))
