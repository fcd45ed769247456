"""The Python binding against a float64 NumPy reference (and PyTorch, when it is installed)."""
import ctypes
import os

import numpy as np
import pytest

os.environ.setdefault("POCL_DEVICES", "pthread pthread")  # two CPU devices for the "all" test
import clxent  # noqa: E402


@pytest.fixture(scope="module")
def ctx():
    with clxent.Context() as c:
        yield c


def ref_softmax(z, y, w=None, eps=0.0, zl=0.0, cap=0.0, ignore=-100, reduction="mean"):
    z = z.astype(np.float64)
    n, c = z.shape
    u = cap * np.tanh(z / cap) if cap else z
    lse = np.log(np.exp(u - u.max(1, keepdims=True)).sum(1)) + u.max(1)
    a = np.exp(u - lse[:, None])
    w = np.ones(c) if w is None else w.astype(np.float64)
    keep = y != ignore
    onehot = np.zeros((n, c))
    onehot[np.arange(n)[keep], y[keep]] = 1
    tau = w[None, :] * ((1 - eps) * onehot + eps / c) * keep[:, None]
    ce = (tau * (lse[:, None] - u)).sum(1)
    rows = ce + zl * lse ** 2 * keep
    div = (w[y[keep]]).sum() if reduction == "mean" else 1.0
    cnt = keep.sum() if reduction == "mean" else 1.0
    S, Sz = 1 / div, 1 / cnt
    grad = (S * (a * tau.sum(1, keepdims=True) - tau) + 2 * zl * Sz * lse[:, None] * a * keep[:, None])
    if cap:
        grad *= 1 - np.tanh(z / cap) ** 2
    J = ce.sum() / div + (zl * (lse ** 2 * keep).sum() / cnt) if reduction == "mean" else rows.sum()
    return (rows if reduction == "none" else J), grad, lse


def test_version_and_device(ctx):
    assert clxent.version().count(".") == 2
    assert ctx.device_name


def test_all_devices_split_the_batch(ctx):
    rng = np.random.default_rng(5)
    z = rng.uniform(-8, 8, (300, 77)).astype(np.float32)
    y = rng.integers(0, 77, 300).astype(np.int32)
    with clxent.Context("all") as multi:
        shares = multi.device_shares
        assert len(shares) >= 2 and abs(sum(shares) - 1) < 1e-12, shares
        assert " + " in multi.device_name
        r = multi.softmax_xent(z, y)
        loss, grad = r.loss, r.grad
    ref_loss, ref_grad, _ = ref_softmax(z, y)
    assert abs(loss - ref_loss) < 1e-5 * abs(ref_loss)
    np.testing.assert_allclose(grad, ref_grad, atol=1e-7, rtol=1e-4)
    assert ctx.device_shares == [1.0]


def test_worked_values(ctx):
    z = np.log(np.array([[0.1, 0.6, 0.3], [0.1, 0.3, 0.6]], dtype=np.float32))
    r = ctx.softmax_xent(z, [2, 2], reduction="none")
    np.testing.assert_allclose(r.loss, [1.204, 0.511], atol=1e-3)
    np.testing.assert_allclose(r.grad[0], [0.1, 0.6, -0.7], atol=1e-6)
    np.testing.assert_allclose(ctx.entropy([[0.7, 0.2, 0.1]]), [0.802], atol=1e-3)
    np.testing.assert_allclose(ctx.bce([0.6, 0.7], [1.0, 1.0], reduction="none").loss, [0.511, 0.357], atol=1e-3)


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (33, 1000), (4, 4099)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_softmax_options(ctx, shape, reduction):
    rng = np.random.default_rng(sum(shape))
    n, c = shape
    z = rng.uniform(-8, 8, shape).astype(np.float32)
    y = rng.integers(0, c, n).astype(np.int32)
    if n > 3:
        y[1] = -100
    w = rng.uniform(0.5, 2, c).astype(np.float32)
    for kw in [{}, dict(class_weight=w, label_smoothing=0.1), dict(z_loss=1e-2, softcap=5.0)]:
        r = ctx.softmax_xent(z, y, reduction=reduction, lse=True, bias_grad=True, **kw)
        J, g, lse = ref_softmax(z, y, w=kw.get("class_weight"), eps=kw.get("label_smoothing", 0),
                                zl=kw.get("z_loss", 0), cap=kw.get("softcap", 0), reduction=reduction)
        np.testing.assert_allclose(r.loss, J, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(r.grad, g, rtol=1e-3, atol=1e-6 * max(1.0, np.abs(g).max()))
        np.testing.assert_allclose(r.lse, lse, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(r.bias_grad, r.grad.astype(np.float64).sum(0), rtol=1e-4, atol=1e-5)


def test_zero_copy_in_place_and_storage_types(ctx):
    rng = np.random.default_rng(3)
    z = rng.uniform(-4, 4, (16, 37)).astype(np.float32)
    y = rng.integers(0, 37, 16).astype(np.int32)
    _, g, _ = ref_softmax(z, y)
    work = z.copy()
    r = ctx.softmax_xent(work, y, in_place=True)
    assert r.grad is work or np.shares_memory(r.grad, work)
    np.testing.assert_allclose(work, g, rtol=1e-4, atol=1e-7)
    h = z.astype(np.float16)
    r = ctx.softmax_xent(h, y)
    assert r.grad.dtype == np.float16
    _, gh, _ = ref_softmax(h.astype(np.float32), y)
    np.testing.assert_allclose(r.grad.astype(np.float64), gh, rtol=2e-3, atol=1e-6)
    bf = (z.view(np.uint32) >> 16).astype(np.uint16)  # truncated: exact bfloat16 inputs
    r = ctx.softmax_xent(bf, y, dtype="bfloat16")
    assert r.grad.dtype == np.uint16
    zb = (bf.astype(np.uint32) << 16).view(np.float32)
    _, gb, _ = ref_softmax(zb, y)
    got = (r.grad.astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_allclose(got, gb, rtol=8e-3, atol=1e-6)


def test_soft_and_binary(ctx):
    rng = np.random.default_rng(4)
    z = rng.uniform(-5, 5, (9, 11)).astype(np.float32)
    t = rng.uniform(0, 1, (9, 11)).astype(np.float32)
    t /= t.sum(1, keepdims=True)
    r = ctx.softmax_xent_soft(z, t, reduction="sum")
    lse = np.log(np.exp(z.astype(np.float64)).sum(1))
    np.testing.assert_allclose(r.loss, (t * (lse[:, None] - z)).sum(), rtol=1e-5)
    x = rng.uniform(-6, 6, (50, 3)).astype(np.float32)
    yb = (rng.uniform(0, 1, (50, 3)) > 0.5).astype(np.float32)
    pw = np.array([1.0, 2.0, 0.5], dtype=np.float32)
    r = ctx.sigmoid_xent(x, yb, pos_weight=pw, reduction="none")
    xd = x.astype(np.float64)
    sp = np.logaddexp(0, xd)
    np.testing.assert_allclose(r.loss, pw * yb * (sp - xd) + (1 - yb) * sp, rtol=1e-5, atol=1e-6)
    s = 1 / (1 + np.exp(-xd))
    np.testing.assert_allclose(r.grad, s * (1 - yb) - pw * yb * (1 - s), rtol=1e-5, atol=1e-6)
    r1 = ctx.sigmoid_xent(x[:, 0], yb[:, 0])
    assert r1.grad.shape == (50,)


def test_errors_carry_status_and_message(ctx):
    z = np.zeros((4, 3), dtype=np.float32)
    with pytest.raises(clxent.Error) as e:
        ctx.softmax_xent(z, [0, 1, 5, 0])
    assert e.value.status == "LABEL_RANGE" and "labels[2] = 5" in e.value.message
    with pytest.raises(clxent.Error) as e:
        ctx.softmax_xent(z, [0, 1, 2, 0], label_smoothing=float("nan"))
    assert e.value.status == "INVALID_ARG" and "label_smoothing" in e.value.message
    with pytest.raises(clxent.Error) as e:
        clxent.Context("no-such-device")
    assert e.value.status == "NO_DEVICE"
    with pytest.raises(ValueError):
        ctx.softmax_xent(z, [0, 1, 2, 0], reduction="avg")


def test_matches_pytorch_when_installed(ctx):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    z = rng.uniform(-4, 4, (32, 100)).astype(np.float32)
    y = rng.integers(0, 100, 32)
    y[3] = -100
    w = rng.uniform(0.5, 2, 100).astype(np.float32)
    zt = torch.tensor(z, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(zt, torch.tensor(y), weight=torch.tensor(w), label_smoothing=0.1)
    loss.backward()
    r = ctx.softmax_xent(z, y, class_weight=w, label_smoothing=0.1)
    np.testing.assert_allclose(r.loss, loss.item(), rtol=1e-5)
    np.testing.assert_allclose(r.grad, zt.grad.numpy(), rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------- the Python boundary (issue 13 §4)

def test_labels_outside_int32_raise_not_wrap(ctx):
    z = np.zeros((4, 3), dtype=np.float32)
    for labels in ([0, 1, 2 ** 32 + 1, 0], np.array([0, 1, 2 ** 32 + 1, 0], dtype=np.int64),
                   np.array([0, 1, 2 ** 63 + 1, 0], dtype=np.uint64), [0, 1, -2 ** 31 - 1, 0], [0, 1, 2 ** 70, 0]):
        with pytest.raises(clxent.LabelRange) as e:
            ctx.softmax_xent(z, labels)
        assert isinstance(e.value, IndexError) and isinstance(e.value, clxent.Error)
        assert e.value.status == "LABEL_RANGE" and "labels[2]" in e.value.message
    # int64 labels inside int32 still work, without the caller casting
    r = ctx.softmax_xent(z, np.array([0, 1, 2, 0], dtype=np.int64), reduction="sum")
    assert abs(r.loss - 4 * np.log(3)) < 1e-5


def test_ignore_index_outside_int32_raises(ctx):
    z = np.zeros((4, 4), dtype=np.float32)
    y = [0, 3, 1, 3]
    with pytest.raises(clxent.InvalidArgument) as e:  # would have ignored the rows labelled 3
        ctx.softmax_xent(z, y, ignore_index=2 ** 32 + 3)
    assert isinstance(e.value, ValueError) and "ignore_index" in e.value.message
    with pytest.raises(TypeError):
        ctx.softmax_xent(z, y, ignore_index=3.0)
    r = ctx.softmax_xent(z, y, ignore_index=np.int64(3), reduction="none")
    np.testing.assert_allclose(r.loss, [np.log(4), 0, np.log(4), 0], atol=1e-6)


def test_float_and_bool_labels_raise(ctx):
    z = np.zeros((4, 3), dtype=np.float32)
    for labels in (np.array([0.0, 1.0, 2.5, 0.0]), [0.0, 1.0, 2.0, 0.0], np.array([True, False, True, False])):
        with pytest.raises(TypeError) as e:
            ctx.softmax_xent(z, labels)
        assert isinstance(e.value, clxent.Error) and "labels" in e.value.message


def test_uint16_logits_need_an_explicit_16_bit_dtype(ctx):
    rng = np.random.default_rng(6)
    z = rng.uniform(-4, 4, (8, 5)).astype(np.float32)
    y = rng.integers(0, 5, 8)
    bf = (z.view(np.uint32) >> 16).astype(np.uint16)
    with pytest.raises(TypeError) as e:  # would have read the bits 16256, ... as float32 values
        ctx.softmax_xent(bf, y)
    assert "bfloat16" in str(e.value)
    with pytest.raises(TypeError):
        ctx.sigmoid_xent(bf, bf, dtype="float32")
    h = z.astype(np.float16)
    ref = ctx.softmax_xent(h, y)
    got = ctx.softmax_xent(h.view(np.uint16), y, dtype="float16")  # float16 bits in a uint16 array
    assert got.loss == ref.loss and np.array_equal(got.grad.view(np.uint16), ref.grad.view(np.uint16))


def test_in_place_refuses_what_it_cannot_write(ctx):
    z = np.random.default_rng(7).uniform(-4, 4, (6, 8)).astype(np.float32)
    y = [0, 1, 2, 3, 4, 5]
    frozen = z.tobytes()
    ro = np.frombuffer(frozen, dtype=np.float32).reshape(6, 8)
    with pytest.raises(ValueError) as e:
        ctx.softmax_xent(ro, y, in_place=True)
    assert isinstance(e.value, clxent.Error) and "read-only" in e.value.message
    assert frozen == z.tobytes()  # the immutable bytes are untouched
    with pytest.raises(ValueError):
        ctx.sigmoid_xent(ro, np.zeros((6, 8), dtype=np.float32), in_place=True)
    with pytest.raises(ValueError):  # a strided view: the gradient would land in a private copy
        ctx.softmax_xent(z.copy()[:, ::2], y, in_place=True)
    with pytest.raises(TypeError):  # float64 would need a float32 copy
        ctx.softmax_xent(z.astype(np.float64), y, in_place=True)
    with pytest.raises(TypeError):
        ctx.softmax_xent(z.tolist(), y, in_place=True)
    assert ctx.softmax_xent(ro, y).grad.shape == (6, 8)  # read-only logits are fine when not in place
    bits = z.astype(np.float16).view(np.uint16)  # float16 bits in uint16: written in place, as bits
    ref = ctx.softmax_xent(bits.view(np.float16), y).grad
    ctx.softmax_xent(bits, y, dtype="float16", in_place=True)
    assert np.array_equal(bits, ref.view(np.uint16))


def test_in_place_on_a_read_only_memmap_raises_not_crashes(tmp_path):
    # in a child process: the old binding wrote through the read-only mapping and took a SIGSEGV
    path = tmp_path / "z.f32"
    np.zeros((4, 3), dtype=np.float32).tofile(path)
    code = f"""if True:
        import numpy as np, clxent
        z = np.memmap({str(path)!r}, dtype=np.float32, mode="r", shape=(4, 3))
        with clxent.Context() as ctx:
            try:
                ctx.softmax_xent(z, [0, 1, 2, 0], in_place=True)
            except ValueError as e:
                print("raised:", e)
            print("loss", ctx.softmax_xent(z, [0, 1, 2, 0]).loss)
    """
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, (p.returncode, p.stderr)
    assert "raised:" in p.stdout and "read-only" in p.stdout, p.stdout
    assert np.fromfile(path, dtype=np.float32).tolist() == [0.0] * 12


def test_errors_are_the_python_exceptions_users_catch(ctx, monkeypatch):
    z = np.zeros((4, 3), dtype=np.float32)
    with pytest.raises(IndexError):
        ctx.softmax_xent(z, [0, 1, 5, 0])
    with pytest.raises(ValueError) as e:
        ctx.softmax_xent(z, [0, 1, 2, 0], z_loss=-1.0)
    assert isinstance(e.value, clxent.InvalidArgument) and e.value.status == "INVALID_ARG"
    with pytest.raises(clxent.InvalidArgument):  # the binding's own checks raise the same class
        ctx.softmax_xent(z, [0, 1, 2], reduction="avg")
    for cap in [1e-40, 1e-50, 1e38]:  # subnormal in float32, 0 in float32 (not "off"), past 2^126
        with pytest.raises(clxent.InvalidArgument, match="softcap"):
            ctx.softmax_xent(z, [0, 1, 2, 0], softcap=cap)
    assert np.isfinite(ctx.softmax_xent(z, [0, 1, 2, 0], softcap=2.0 ** -126)[0])
    with pytest.raises(clxent.InvalidArgument):
        ctx.softmax_xent(z, [0, 1, 2])
    with pytest.raises(clxent.NoDevice) as e:
        clxent.Context("no-such-device")
    assert isinstance(e.value, clxent.Error) and e.value.status == "NO_DEVICE" and e.value.message
    monkeypatch.setenv("CLXENT_MAX_ALLOC", "4096")  # one row of 2048 floats needs 8192 bytes
    with clxent.Context() as small:
        with pytest.raises(MemoryError) as e:
            small.softmax_xent(np.zeros((2, 2048), dtype=np.float32), [0, 1])
    assert isinstance(e.value, clxent.OutOfMemory) and e.value.status == "OUT_OF_MEMORY"
    for code, name in enumerate(clxent.STATUS_NAMES[1:], start=1):
        err = clxent._error(code, "m")
        assert isinstance(err, clxent.Error) and err.status == name and err.message == "m" and err.code == code
    assert type(clxent._error(99, "future status")) is clxent.Error


# ---------------------------------------------------------------- the 1.x ABI (issue 12)

_INCLUDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "include")


def _compile(tmp_path, name, source, *flags):
    import shutil
    import subprocess
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler")
    src = tmp_path / (name + ".c")
    src.write_text(source)
    out = tmp_path / name
    subprocess.run([cc, "-std=c11", *flags, str(src), "-o", str(out)], check=True)
    return str(out)


def test_struct_layouts_match_the_header(tmp_path):
    """The ctypes structs against the C compiler's sizeof and offsetof from include/clxent.h."""
    import subprocess
    structs = {"clxent_opts": clxent._Opts, "clxent_ex": clxent._Ex, "clxent_config": clxent._Config}
    lines = []
    for cname, cls in structs.items():
        lines.append(f'printf("{cname} %zu\\n", sizeof({cname}));')
        for field, _ in cls._fields_:
            lines.append(f'printf("{cname}.{field} %zu %zu\\n", offsetof({cname}, {field}), '
                         f'sizeof((({cname} *)0)->{field}));')
    source = ("#include <stdio.h>\n#include <stddef.h>\n#include \"clxent.h\"\nint main(void) {\n"
              + "\n".join(lines) + "\nreturn 0;\n}\n")
    exe = _compile(tmp_path, "layout", source, "-I" + _INCLUDE)
    expected = []
    for cname, cls in structs.items():
        expected.append(f"{cname} {ctypes.sizeof(cls)}")
        for field, _ in cls._fields_:
            d = getattr(cls, field)
            expected.append(f"{cname}.{field} {d.offset} {d.size}")
    got = subprocess.run([exe], check=True, capture_output=True, text=True).stdout.split("\n")[:-1]
    assert got == expected
    assert clxent._Opts().size == ctypes.sizeof(clxent._Opts) and clxent._Ex().size == ctypes.sizeof(clxent._Ex)


@pytest.mark.parametrize("version,has_create_ex,why", [
    (200, False, "lacks clxent_create_ex"), (20000, True, "another major version")])
def test_a_library_of_another_abi_is_refused_at_import(tmp_path, version, has_create_ex, why):
    import subprocess
    import sys
    text = f"{version // 10000}.{version // 100 % 100}.{version % 100}"
    source = (f'unsigned clxent_version(void) {{ return {version}; }}\n'
              f'const char *clxent_version_string(void) {{ return "{text}"; }}\n'
              + ("int clxent_create_ex(void) { return 1; }\n" if has_create_ex else ""))
    lib = _compile(tmp_path, "libclxent.so", source, "-shared", "-fPIC")
    env = dict(os.environ, CLXENT_LIBRARY=lib)
    p = subprocess.run([sys.executable, "-c", "import clxent"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "ImportError" in p.stderr and why in p.stderr and text in p.stderr, p.stderr


def test_context_settings(tmp_path):
    assert clxent.version().startswith("1.")
    with clxent.Context(cache=False) as c:
        assert c.softmax_xent(np.zeros((2, 3), dtype=np.float32), [0, 1], reduction="sum").loss > 0
    with clxent.Context(cache=True, cache_dir=tmp_path / "cache") as c:
        assert c.device_name
    assert os.listdir(tmp_path / "cache")
    with clxent.Context(max_alloc=4096) as small:  # one row of 2048 floats needs 8192 bytes
        with pytest.raises(clxent.OutOfMemory):
            small.softmax_xent(np.zeros((2, 2048), dtype=np.float32), [0, 1])
    with pytest.raises(TypeError):
        clxent.Context(cache="yes")
    with pytest.raises(clxent.InvalidArgument):
        clxent.Context(max_alloc=-1)


def test_sigmoid_at_infinite_logits_follows_the_limits(ctx):
    """Issue 13 §5: z = +inf, y = 1 and z = -inf, y = 0 lose nothing; the opposite pairs lose inf."""
    z = np.array([np.inf, -np.inf, np.inf, -np.inf], np.float32)
    y = np.array([1, 0, 0, 1], np.float32)
    r = ctx.sigmoid_xent(z, y, reduction="none")
    np.testing.assert_array_equal(r.loss, [0, 0, np.inf, np.inf])
    np.testing.assert_array_equal(r.grad, [0, 0, 1, -1])
    assert ctx.sigmoid_xent(z[:2], y[:2]).loss == 0.0
    ones = ctx.sigmoid_xent(z, y, reduction="none", pos_weight=np.ones(1, np.float32))
    np.testing.assert_array_equal(ones.loss, r.loss)  # pos_weight all ones: the bits of none
    np.testing.assert_array_equal(ones.grad, r.grad)


def test_zero_mean_divisor_is_nan_as_in_pytorch(ctx):
    """Every counted row of class weight 0: NaN loss (also with smoothing) and NaN gradient on the
    counted rows; an ignored row's gradient stays 0 (the README's rule, which is PyTorch's)."""
    z = np.array([[1, 2, 3], [-1, 0, 1], [4, 4, 4]], np.float32)
    y = np.array([0, -100, 0], np.int32)
    for eps in (0.0, 0.2):
        r = ctx.softmax_xent(z, y, class_weight=np.array([0, 1, 2], np.float32), label_smoothing=eps)
        assert np.isnan(r.loss)
        assert np.isnan(r.grad[[0, 2]]).all() and (r.grad[1] == 0).all()


def test_equal_tiny_class_weights_give_the_unweighted_answer(ctx):
    rng = np.random.default_rng(2)
    z = rng.uniform(-4, 4, (16, 30)).astype(np.float32)
    y = rng.integers(0, 30, 16).astype(np.int32)
    plain = ctx.softmax_xent(z, y)
    for w in (1e-40, 2.0 ** -140, 3e38):
        r = ctx.softmax_xent(z, y, class_weight=np.full(30, w, np.float32))
        np.testing.assert_allclose(r.loss, plain.loss, rtol=1e-6)
        np.testing.assert_allclose(r.grad, plain.grad, rtol=1e-5, atol=1e-9)


def test_bad_environment_raises_invalid_argument(monkeypatch):
    """Issue 13 §2 through the binding: a huge or malformed CLXENT_* value is an error at once."""
    for name, value in [("CLXENT_GROUP_SIZE", "9223372036854775808"), ("CLXENT_VEC", "8abc"),
                        ("CLXENT_BLOCK_BYTES", "-1"), ("CLXENT_DEVICE", "all,0:0")]:
        monkeypatch.setenv(name, value)
        with pytest.raises(clxent.InvalidArgument) as e:
            clxent.Context()
        assert name in e.value.message or "twice" in e.value.message
        monkeypatch.delenv(name)


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    """Issue 13 §1 through the binding: a cache entry cut short neither aborts nor fails a start."""
    z = np.array([[0.0, np.log(2.0), np.log(7.0)]], np.float32)
    y = np.array([2], np.int32)
    with clxent.Context(cache=True, cache_dir=str(tmp_path)) as c:
        expected = c.softmax_xent(z, y).loss
    (entry,) = list(tmp_path.glob("*.bin"))
    size = entry.stat().st_size
    entry.write_bytes(entry.read_bytes()[: size // 2])
    with clxent.Context(cache=True, cache_dir=str(tmp_path)) as c:
        assert c.softmax_xent(z, y).loss == expected
    assert entry.stat().st_size == size  # healed


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16bit_binary_losses_stream_under_a_small_cap(ctx, dtype):
    """Issue 13 §3 through the binding: 16-bit binary losses stream like float32 under a cap."""
    rng = np.random.default_rng(5)
    z = rng.uniform(-3, 3, (97, 300)).astype(np.float32)
    t = rng.uniform(0, 1, (97, 300)).astype(np.float32)
    bits = (lambda a: a.astype(np.float16).view(np.uint16)) if dtype == "float16" else \
        (lambda a: (a.view(np.uint32) >> 16).astype(np.uint16))
    want = ctx.sigmoid_xent(bits(z), bits(t), dtype=dtype)
    with clxent.Context(max_alloc=16384) as small:
        got = small.sigmoid_xent(bits(z), bits(t), dtype=dtype)
    assert got.loss == want.loss
    np.testing.assert_array_equal(got.grad, want.grad)


# ---------------------------------------------------------------- issue 14: the gradient pool, out=


@pytest.fixture
def pool(monkeypatch):
    """A pool of the test's own (the module's default is shared by every test), pooling from 1 byte."""
    p = clxent._pool.GradientPool(min_bytes=1)
    monkeypatch.setattr(clxent, "_POOL", p)
    yield p
    p.configure(clear=True)


def _problem(seed, n=64, c=500):
    rng = np.random.default_rng(seed)
    return rng.uniform(-4, 4, (n, c)).astype(np.float32), rng.integers(0, c, n).astype(np.int32)


def _block_of(a):
    """The pool's block an array's memory lies in: its lease, found through the bases."""
    while not isinstance(a, clxent._pool._Lease):
        a = a.base
    return a._block


def test_pool_reuses_a_dropped_gradient_and_never_a_live_one(ctx, pool):
    z, y = _problem(1)
    z2, y2 = _problem(2)
    first = ctx.softmax_xent(z, y).grad
    keep = first.copy()
    at = first.ctypes.data
    second = ctx.softmax_xent(z2, y2).grad  # the first is alive: another block
    assert not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, keep)  # untouched by the second call
    assert pool.configure().misses == 2
    del first
    third = ctx.softmax_xent(z2, y2).grad  # the first's block, paged in already
    assert third.ctypes.data == at and pool.configure().hits == 1
    np.testing.assert_array_equal(third, second)  # computed afresh, nothing stale
    np.testing.assert_allclose(third, ref_softmax(z2, y2)[1], atol=1e-7, rtol=1e-4)


def test_a_training_loop_alternates_two_blocks(ctx, pool):
    z, y = _problem(3)
    addresses = set()
    grad = None
    for _ in range(6):
        loss, grad = ctx.softmax_xent(z, y)[:2]  # the previous step's gradient dies on rebinding
        addresses.add(grad.ctypes.data)
    info = pool.configure()
    assert len(addresses) == 2 and info.misses == 2 and info.hits == 4, info


@pytest.mark.parametrize("make_view", [
    lambda g: g[1:, ::3], lambda g: g.T, lambda g: g.reshape(-1), lambda g: g.view(np.uint32),
    lambda g: np.asarray(memoryview(g)), lambda g: g[None][0], lambda g: g.view(np.ndarray)[2:5],
    lambda g: np.lib.stride_tricks.as_strided(g, (2, 2), g.strides)])
def test_views_keep_the_block_from_reuse(ctx, pool, make_view):
    z, y = _problem(4)
    grad = ctx.softmax_xent(z, y).grad
    view = make_view(grad)
    saved = np.array(view, copy=True)
    block = _block_of(grad)
    del grad
    z2, y2 = _problem(5)
    for _ in range(3):
        again = ctx.softmax_xent(z2, y2).grad
        assert _block_of(again) is not block and not np.shares_memory(again, view)
    np.testing.assert_array_equal(view, saved)
    del view, again
    assert pool.configure().free_blocks >= 1


@pytest.mark.parametrize("storage", ["float32", "float16", "bfloat16", "float16 bits"])
def test_pooled_gradients_have_the_storage_type_and_the_values(ctx, pool, storage):
    z, y = _problem(6, 33, 257)
    given = {"float32": (z, None), "float16": (z.astype(np.float16), None),
             "bfloat16": ((z.view(np.uint32) >> 16).astype(np.uint16), "bfloat16"),
             "float16 bits": (z.astype(np.float16).view(np.uint16), "float16")}
    logits, dtype = given[storage]
    kind = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16, "float16 bits": np.float16}[storage]
    want = ctx.softmax_xent(logits, y, dtype=dtype, out=np.empty(logits.shape, kind)).grad  # not pooled
    for _ in range(3):  # a fresh block, then reused ones
        got = ctx.softmax_xent(logits, y, dtype=dtype).grad
        assert isinstance(_block_of(got), clxent._pool._Block)
        assert got.dtype == want.dtype and got.shape == (33, 257) and got.flags.writeable
        assert got.flags.c_contiguous and got.flags.aligned
        np.testing.assert_array_equal(got, want)
    x = z[:, 0].copy()  # a vector input: the gradient has its shape, a view of the pooled array
    g = ctx.sigmoid_xent(x, np.ones_like(x)).grad
    assert g.shape == x.shape and isinstance(_block_of(g), clxent._pool._Block)


def test_pool_limits_and_clear(ctx, pool):
    grads = [ctx.softmax_xent(*_problem(k)).grad for k in range(7)]
    pool.configure(max_blocks=3)
    del grads
    info = pool.configure()
    assert info.free_blocks == 3 and info.free_bytes == 3 * _block_of(ctx.softmax_xent(*_problem(0)).grad).size
    one = _block_of(ctx.softmax_xent(*_problem(0)).grad).size  # the gradient just dropped went back
    info = pool.configure(max_bytes=2 * one)
    assert info.free_blocks == 2 and info.free_bytes == 2 * one
    assert pool.configure(clear=True).free_blocks == 0
    pool.configure(max_blocks=0)  # off: a plain NumPy array per call, as before the pool
    g = ctx.softmax_xent(*_problem(0)).grad
    assert g.base is None and g.flags.owndata
    small = clxent._pool.GradientPool()  # the default: small gradients are plain arrays
    assert small.min_bytes > 64 * 500 * 4 and small.empty((64, 500), np.dtype(np.float32), 128000).flags.owndata


def test_gradient_pool_settings_are_checked():
    info = clxent.gradient_pool()
    assert isinstance(info, clxent.PoolInfo) and info.max_blocks >= 1 and info.min_bytes >= 1
    for bad in (1.5, "4", True):
        with pytest.raises(TypeError):
            clxent.gradient_pool(max_blocks=bad)
    with pytest.raises(ValueError):
        clxent.gradient_pool(max_bytes=-1)
    assert clxent.gradient_pool(max_blocks=np.int64(info.max_blocks)) == clxent.gradient_pool()


def test_a_lease_dying_while_the_pool_is_locked_does_not_deadlock(ctx, pool):
    z, y = _problem(7)
    grad = ctx.softmax_xent(z, y).grad
    with pool._lock:  # as when a garbage collection runs inside the pool's own methods
        del grad  # its finalizer must not wait for the lock
    assert pool.configure().free_blocks == 1
    again = ctx.softmax_xent(z, y).grad
    assert pool.configure().hits == 1 and again is not None


def test_pool_in_a_forked_child(ctx, pool):
    """A child forked while another thread held the pool's lock can still use the pool."""
    import threading
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    held, release = threading.Event(), threading.Event()

    def hold():
        with pool._lock:
            held.set()
            release.wait()

    t = threading.Thread(target=hold)
    t.start()
    held.wait()
    try:
        pid = os.fork()
        if pid == 0:  # the child: the lock's holder does not exist here
            import signal
            signal.alarm(20)  # a deadlock fails the test instead of hanging it
            ok = pool.configure().max_blocks == 4
            os._exit(0 if ok else 1)
    finally:
        release.set()
        t.join()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_pool_from_several_threads(pool):
    import threading
    failures = []

    def work(seed):
        try:
            with clxent.Context() as c:
                z, y = _problem(seed, 16, 300)
                want = ref_softmax(z, y)[1]
                held = []
                for i in range(40):
                    held.append(c.softmax_xent(z, y).grad)
                    if i % 3:
                        held.pop(0)
                for g in held:
                    np.testing.assert_allclose(g, want, atol=1e-7, rtol=1e-4)
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    info = pool.configure()
    assert info.free_blocks <= info.max_blocks and info.hits > 0
    assert info.free_bytes == sum(b.size for b in pool._free)


def test_out_takes_the_gradient(ctx):
    z, y = _problem(8, 20, 30)
    out = np.full_like(z, np.nan)
    r = ctx.softmax_xent(z, y, out=out)
    assert r.grad is out
    np.testing.assert_allclose(out, ref_softmax(z, y)[1], atol=1e-7, rtol=1e-4)
    work = z.copy()  # out= the logits themselves: in place
    assert ctx.softmax_xent(work, y, out=work).grad is work
    np.testing.assert_array_equal(work, out)
    x = z[:, 0].copy()
    o1 = np.empty_like(x)  # a vector input: out of its shape (or the [n, 1] the library sees)
    assert ctx.sigmoid_xent(x, np.ones_like(x), out=o1).grad is o1
    o2 = np.empty((20, 1), np.float32)
    ctx.sigmoid_xent(x, np.ones_like(x), out=o2)
    np.testing.assert_array_equal(o2[:, 0], o1)
    t = np.full_like(z, 1 / 30)
    o3 = np.empty_like(z)
    assert ctx.softmax_xent_soft(z, t, out=o3).grad is o3
    np.testing.assert_allclose(o3, ctx.softmax_xent_soft(z, t).grad)


def test_out_refuses_what_it_cannot_write(ctx):
    z, y = _problem(9, 6, 8)
    with pytest.raises(TypeError):
        ctx.softmax_xent(z, y, out=np.empty((6, 8), np.float64))
    with pytest.raises(TypeError):
        ctx.softmax_xent(z, y, out=[[0.0] * 8] * 6)
    with pytest.raises(ValueError) as e:
        ctx.softmax_xent(z, y, out=np.empty((6, 9), np.float32))
    assert "shape" in e.value.message
    with pytest.raises(ValueError):
        ctx.softmax_xent(z, y, out=np.frombuffer(bytes(6 * 8 * 4), np.float32).reshape(6, 8))
    with pytest.raises(ValueError):
        ctx.softmax_xent(z, y, out=np.empty((6, 16), np.float32)[:, ::2])
    with pytest.raises(ValueError):
        ctx.softmax_xent(z.copy(), y, out=np.empty_like(z), in_place=True)
    with pytest.raises(ValueError):
        ctx.softmax_xent(z, y, out=np.empty_like(z), grad=False)
    big = np.zeros((7, 8), np.float32)
    big[:6] = z
    with pytest.raises(ValueError) as e:  # overlapping the logits, shifted by a row
        ctx.softmax_xent(big[:6], y, out=big[1:])
    assert "overlaps" in e.value.message
    t = np.full((6, 8), 1 / 8, np.float32)
    with pytest.raises(ValueError):
        ctx.softmax_xent_soft(z, t, out=t)
    assert ctx.softmax_xent(z, y).grad.shape == (6, 8)


def test_shortcut_and_full_path_agree(ctx):
    """The binding takes plain arrays as they are and converts the rest; both give one answer and
    the same refusals."""
    z, y = _problem(10, 9, 40)
    want = ctx.softmax_xent(z, y)
    for logits, labels in ((z.astype(np.float64), y), (np.asfortranarray(z), y), (z.tolist(), y.tolist()),
                           (z, y.astype(np.int64)), (z, y.astype(np.uint8)), (z, y.reshape(9, 1))):
        r = ctx.softmax_xent(logits, labels)
        assert r.loss == want.loss
        np.testing.assert_array_equal(r.grad, want.grad)
    for dtype in (np.dtype("float32"), np.float32, "float64", "f4"):
        with pytest.raises(ValueError):
            ctx.softmax_xent(z, y, dtype=dtype)
    with pytest.raises(TypeError):
        ctx.softmax_xent(z, y, dtype="bfloat16")  # float32 values are not bfloat16 bits
    with pytest.raises(TypeError):
        ctx.softmax_xent(z, y, ignore_index=1.0)
    with pytest.raises(ValueError):
        ctx.softmax_xent(z, y, reduction=["mean"])
    a = ctx.softmax_xent(z, y, label_smoothing=0.1).loss  # options held once, not mixed up
    assert a != want.loss and ctx.softmax_xent(z, y).loss == want.loss
    assert ctx.softmax_xent(z, y, label_smoothing=0.1).loss == a
    assert isinstance(want, clxent.Result) and isinstance(want.loss, float)
    assert want._replace(lse=1).lse == 1
    with clxent.Context() as other:  # each Context reduces into its own scalar
        assert other.softmax_xent(z[:3], y[:3]).loss != want.loss and ctx.softmax_xent(z, y).loss == want.loss


# ---------------------------------------------------------------- grad_output and mean_denominator

def _ref_soft(z, t, reduction="mean", d=None):
    z = z.astype(np.float64)
    t = t.astype(np.float64)
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    a = np.exp(z - lse[:, None])
    rows = (t * (lse[:, None] - z)).sum(1)
    div = (d if d else z.shape[0]) if reduction == "mean" else 1.0
    grad = (a * t.sum(1, keepdims=True) - t) / div
    return (rows if reduction == "none" else rows.sum() / div), grad


def _ref_sigmoid(z, y, reduction="mean", d=None):
    z = z.astype(np.float64)
    y = y.astype(np.float64)
    values = np.logaddexp(0, -z) * y + np.logaddexp(0, z) * (1 - y)
    div = (d if d else z.size) if reduction == "mean" else 1.0
    grad = (1 / (1 + np.exp(-z)) - y) / div
    return (values if reduction == "none" else values.sum() / div), grad


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (37, 32), (70, 129), (3, 4099)])
def test_grad_output_per_row_and_per_value(ctx, shape):
    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    n, c = shape
    z = rng.uniform(-6, 6, shape).astype(np.float32)
    y = rng.integers(0, c, n).astype(np.int32)
    y[::5] = -100
    t = rng.dirichlet(np.ones(c), n).astype(np.float32)
    b = (rng.uniform(0, 1, shape) < 0.4).astype(np.float32)
    g_rows = rng.uniform(-2, 2, n).astype(np.float32)
    g_rows[::3] = 0
    g_values = rng.uniform(-2, 2, shape).astype(np.float32)
    r = ctx.softmax_xent(z, y, reduction="none", z_loss=1e-3, grad_output=g_rows)
    rows, grad, _ = ref_softmax(z, y, zl=1e-3, reduction="none")
    np.testing.assert_allclose(r.loss, rows, rtol=1e-4, atol=1e-5)  # the loss is not scaled
    np.testing.assert_allclose(r.grad, grad * g_rows[:, None], rtol=1e-4, atol=1e-6)
    r = ctx.softmax_xent_soft(z, t, reduction="none", grad_output=g_rows)
    rows, grad = _ref_soft(z, t, "none")
    np.testing.assert_allclose(r.loss, rows, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r.grad, grad * g_rows[:, None], rtol=1e-4, atol=1e-6)
    r = ctx.sigmoid_xent(z, b, reduction="none", grad_output=g_values)
    values, grad = _ref_sigmoid(z, b, "none")
    np.testing.assert_allclose(r.loss, values, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(r.grad, grad * g_values, rtol=1e-4, atol=1e-6)
    p = rng.uniform(0.05, 0.95, shape).astype(np.float32)
    r = ctx.bce(p, b, reduction="none", grad_output=g_values)
    want = (p.astype(np.float64) - b) / (p * (1.0 - p.astype(np.float64))) * g_values
    np.testing.assert_allclose(r.grad, want, rtol=1e-4, atol=1e-6)
    # ones: the bits of no grad_output
    plain = ctx.softmax_xent(z, y, reduction="none", label_smoothing=0.1)
    ones = ctx.softmax_xent(z, y, reduction="none", label_smoothing=0.1, grad_output=np.ones(n))
    np.testing.assert_array_equal(plain.grad, ones.grad)
    np.testing.assert_array_equal(plain.loss, ones.loss)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_grad_output_scalar(ctx, reduction):
    rng = np.random.default_rng(4)
    z = rng.uniform(-6, 6, (40, 17)).astype(np.float32)
    y = rng.integers(0, 17, 40).astype(np.int32)
    plain = ctx.softmax_xent(z, y, reduction=reduction)
    for g in (2.5, -0.5, 0.0, np.float32(3), np.array([1.5])):
        r = ctx.softmax_xent(z, y, reduction=reduction, grad_output=g)
        assert r.loss == plain.loss
        np.testing.assert_allclose(r.grad, plain.grad.astype(np.float64) * float(np.asarray(g).ravel()[0]),
                                   rtol=1e-6, atol=1e-12)
    r = ctx.sigmoid_xent(z, (z > 0).astype(np.float32), reduction=reduction, grad_output=-2.0)
    _, grad = _ref_sigmoid(z, (z > 0).astype(np.float32), reduction)
    np.testing.assert_allclose(r.grad, -2.0 * grad, rtol=1e-4, atol=1e-7)


def test_mean_denominator_and_accumulation(ctx):
    rng = np.random.default_rng(8)
    n, c = 90, 33
    z = rng.uniform(-6, 6, (n, c)).astype(np.float32)
    y = rng.integers(0, c, n).astype(np.int32)
    y[::4] = -100
    counted = int((y != -100).sum())
    whole = ctx.softmax_xent(z, y, z_loss=1e-3, label_smoothing=0.1)
    halves = [ctx.softmax_xent(z[s], y[s], z_loss=1e-3, label_smoothing=0.1, mean_denominator=counted)
              for s in (slice(0, 40), slice(40, n))]
    assert abs(halves[0].loss + halves[1].loss - whole.loss) < 1e-5 * abs(whole.loss)
    np.testing.assert_allclose(np.concatenate([h.grad for h in halves]), whole.grad, rtol=1e-5, atol=1e-9)
    # against NumPy: D divides the loss and the gradient
    t = rng.dirichlet(np.ones(c), n).astype(np.float32)
    r = ctx.softmax_xent_soft(z, t, mean_denominator=12.5)
    loss, grad = _ref_soft(z, t, "mean", 12.5)
    assert abs(r.loss - loss) < 1e-5 * abs(loss)
    np.testing.assert_allclose(r.grad, grad, rtol=1e-4, atol=1e-8)
    b = (rng.uniform(0, 1, (n, c)) < 0.5).astype(np.float32)
    r = ctx.sigmoid_xent(z, b, mean_denominator=7, grad_output=3.0)
    loss, grad = _ref_sigmoid(z, b, "mean", 7)
    assert abs(r.loss - loss) < 1e-5 * abs(loss)
    np.testing.assert_allclose(r.grad, 3 * grad, rtol=1e-4, atol=1e-8)
    # nothing counted: loss 0, not NaN
    r = ctx.softmax_xent(z, np.full(n, -100, np.int32), mean_denominator=64)
    assert r.loss == 0.0 and not r.grad.any()


def test_grad_output_and_mean_denominator_are_checked(ctx):
    z = np.zeros((4, 3), np.float32)
    y = np.zeros(4, np.int32)
    with pytest.raises(clxent.InvalidArgument, match="one value per loss value"):
        ctx.softmax_xent(z, y, reduction="none", grad_output=np.ones(3))
    with pytest.raises(clxent.InvalidArgument, match="one upstream gradient"):
        ctx.softmax_xent(z, y, grad_output=np.ones(4))
    with pytest.raises(clxent.InvalidArgument, match="one value per loss value"):
        ctx.sigmoid_xent(z, z, reduction="none", grad_output=np.ones(4))
    with pytest.raises(clxent.InvalidArgument, match=r"opts->grad_output\[2\]"):
        ctx.softmax_xent(z, y, reduction="none", grad_output=[1, 1, np.nan, 1])
    with pytest.raises(clxent.InvalidArgument, match=r"opts->grad_output\[0\]"):
        ctx.bce(z, z, grad_output=np.inf)
    for bad in (0, -1.0, np.nan, "3", True):
        with pytest.raises(clxent.InvalidArgument, match="mean_denominator"):
            ctx.softmax_xent(z, y, mean_denominator=bad)
    with pytest.raises(clxent.InvalidArgument, match="mean_denominator"):
        ctx.softmax_xent(z, y, mean_denominator=np.inf)
    with pytest.raises(clxent.InvalidArgument, match="'mean' only"):
        ctx.sigmoid_xent(z, z, reduction="sum", mean_denominator=2)


# ---------------------------------------------------------------- PyTorch's (N, C, d1, ..., dK) layout

def to_rows(a):
    """(N, C, d1, ..., dK) -> [N·d1·…·dK, C], the rows in (i, d1, ..., dK) order."""
    return np.moveaxis(a, 1, -1).reshape(-1, a.shape[1])


def from_rows(g, shape):
    """The inverse of to_rows for an array of the given (N, C, d1, ...) shape."""
    return np.moveaxis(g.reshape((shape[0],) + shape[2:] + (shape[1],)), -1, 1)


def ref_soft(z, t, w=None, eps=0.0, zl=0.0, reduction="mean"):
    z, t = z.astype(np.float64), t.astype(np.float64)
    n, c = z.shape
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    a = np.exp(z - lse[:, None])
    w = np.ones(c) if w is None else w.astype(np.float64)
    tau = w[None, :] * ((1 - eps) * t + eps / c)
    rows = (tau * (lse[:, None] - z)).sum(1) + zl * lse ** 2
    S = 1 / n if reduction == "mean" else 1.0
    grad = S * (a * tau.sum(1, keepdims=True) - tau) + 2 * zl * S * lse[:, None] * a
    return (rows if reduction == "none" else rows.sum() * S), grad, lse


@pytest.mark.parametrize("shape", [(2, 5, 3, 4), (3, 21, 17), (1, 1, 9), (2, 10, 2, 3, 5), (4, 150, 8)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_spatial_hard_labels_match_the_reference(ctx, shape, reduction):
    rng = np.random.default_rng(sum(shape))
    c = shape[1]
    z = rng.uniform(-8, 8, shape).astype(np.float32)
    y = rng.integers(0, c, (shape[0],) + shape[2:]).astype(np.int64)  # any integer type, as torch's int64
    y.flat[::5] = -100
    w = rng.uniform(0.5, 2, c).astype(np.float32)
    for kw in [{}, dict(class_weight=w, label_smoothing=0.1), dict(z_loss=1e-2, softcap=5.0)]:
        r = ctx.softmax_xent(z, y, reduction=reduction, lse=True, bias_grad=True, **kw)
        J, g, lse = ref_softmax(to_rows(z), y.reshape(-1), w=kw.get("class_weight"), eps=kw.get("label_smoothing", 0),
                                zl=kw.get("z_loss", 0), cap=kw.get("softcap", 0), reduction=reduction)
        rows_shape = (shape[0],) + shape[2:]
        if reduction == "none":
            assert r.loss.shape == rows_shape
            np.testing.assert_allclose(r.loss, J.reshape(rows_shape), rtol=1e-4, atol=1e-5)
        else:
            np.testing.assert_allclose(r.loss, J, rtol=1e-4, atol=1e-5)
        assert r.grad.shape == shape and r.lse.shape == rows_shape
        np.testing.assert_allclose(r.grad, from_rows(g, shape), rtol=1e-3, atol=1e-6 * max(1.0, np.abs(g).max()))
        np.testing.assert_allclose(r.lse, lse.reshape(rows_shape), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(r.bias_grad, to_rows(r.grad.astype(np.float64)).sum(0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_spatial_soft_targets_match_the_reference(ctx, reduction):
    rng = np.random.default_rng(7)
    shape = (3, 6, 5, 7)
    z = rng.uniform(-6, 6, shape).astype(np.float32)
    t = rng.uniform(0, 1, shape).astype(np.float32)
    t /= t.sum(1, keepdims=True)
    w = rng.uniform(0.5, 2, 6).astype(np.float32)
    r = ctx.softmax_xent_soft(z, t, reduction=reduction, class_weight=w, label_smoothing=0.05, z_loss=1e-3, lse=True)
    J, g, lse = ref_soft(to_rows(z), to_rows(t), w=w, eps=0.05, zl=1e-3, reduction=reduction)
    if reduction == "none":
        assert r.loss.shape == (3, 5, 7)
        J = J.reshape(3, 5, 7)
    np.testing.assert_allclose(r.loss, J, rtol=1e-4, atol=1e-5)  # mean: over the N·d1·d2 rows
    np.testing.assert_allclose(r.grad, from_rows(g, shape), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(r.lse, lse.reshape(3, 5, 7), rtol=1e-5, atol=1e-5)


def test_spatial_in_place_storage_types_and_no_copy(ctx):
    rng = np.random.default_rng(8)
    shape = (2, 21, 4, 9)
    z = rng.uniform(-4, 4, shape).astype(np.float32)
    y = rng.integers(0, 21, (2, 4, 9)).astype(np.int32)
    _, g, _ = ref_softmax(to_rows(z), y.reshape(-1))
    work = z.copy()
    r = ctx.softmax_xent(work, y, in_place=True)
    assert r.grad is work or np.shares_memory(r.grad, work)
    np.testing.assert_allclose(work, from_rows(g, shape), rtol=1e-4, atol=1e-7)
    mine = np.empty_like(z)
    assert ctx.softmax_xent(z, y, out=mine).grad is mine
    np.testing.assert_allclose(mine, from_rows(g, shape), rtol=1e-4, atol=1e-7)
    h = z.astype(np.float16)
    r = ctx.softmax_xent(h, y)
    assert r.grad.dtype == np.float16 and r.grad.shape == shape
    _, gh, _ = ref_softmax(to_rows(h.astype(np.float32)), y.reshape(-1))
    np.testing.assert_allclose(r.grad.astype(np.float64), from_rows(gh, shape), rtol=2e-3, atol=1e-6)
    bf = (z.view(np.uint32) >> 16).astype(np.uint16)
    r = ctx.softmax_xent(bf, y, dtype="bfloat16")
    _, gb, _ = ref_softmax(to_rows((bf.astype(np.uint32) << 16).view(np.float32)), y.reshape(-1))
    got = (r.grad.astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_allclose(got, from_rows(gb, shape), rtol=8e-3, atol=1e-6)
    # a non-contiguous view is copied (the library reads C order), with the same result
    zt = np.ascontiguousarray(np.moveaxis(z, 1, -1))
    view = np.moveaxis(zt, -1, 1)
    assert not view.flags.c_contiguous
    np.testing.assert_allclose(ctx.softmax_xent(view, y).grad, from_rows(g, shape), rtol=1e-4, atol=1e-7)
    with pytest.raises(clxent.InvalidArgument):
        ctx.softmax_xent(view, y, in_place=True)


def test_spatial_errors(ctx):
    z = np.zeros((2, 4, 3), dtype=np.float32)
    with pytest.raises(clxent.InvalidArgument, match=r"labels: expected shape \(2, 3\)"):
        ctx.softmax_xent(z, np.zeros(6, dtype=np.int32))
    with pytest.raises(clxent.InvalidArgument, match="empty spatial dimension"):
        ctx.softmax_xent(np.zeros((2, 4, 0), dtype=np.float32), np.zeros((2, 0), dtype=np.int32))
    y = np.zeros((2, 3), dtype=np.int32)
    y[1, 2] = 4
    with pytest.raises(clxent.LabelRange, match=r"labels\[5\] \(i = 1, s = 2 of inner = 3\) = 4"):
        ctx.softmax_xent(z, y)
    with pytest.raises(clxent.InvalidArgument, match=r"targets: expected shape \(2, 4, 3\)"):
        ctx.softmax_xent_soft(z, np.zeros((2, 4, 4), dtype=np.float32))
    with pytest.raises(clxent.InvalidArgument, match="2-D"):
        ctx.sigmoid_xent(z, z)  # the binary losses are elementwise: no spatial form


def _argmax_rows(rng, n, c):
    """Random logits with the rows argmax must get right: ties (the first wins), -inf masks, a row
    of -inf only (0), NaN after the max and before it (the first NaN wins, as numpy.argmax)."""
    z = rng.uniform(-6, 6, (n, c)).astype(np.float32)
    if c > 1 and n >= 6:
        z[0, [c // 3, c - 1]] = 9.0
        z[1, :c // 2] = -np.inf
        z[2, :] = -np.inf
        z[3, [c // 4, c - 1]] = [8.0, np.nan]
        z[4, [0, c - 1]] = [np.nan, np.nan]
        z[5, c // 2] = 1e4
    return z


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (33, 17), (40, 100), (6, 4099)])
@pytest.mark.parametrize("storage", ["float32", "float16", "bfloat16"])
def test_argmax_and_correct_against_numpy(ctx, shape, storage):
    rng = np.random.default_rng(shape[1])
    n, c = shape
    z = _argmax_rows(rng, n, c)
    if storage == "float16":
        x = z.astype(np.float16)
        seen = x.astype(np.float32)
    elif storage == "bfloat16":
        x = (z.view(np.uint32) >> 16).astype(np.uint16)  # truncated: exact bfloat16 values
        seen = (x.astype(np.uint32) << 16).view(np.float32)
    else:
        x = seen = z
    want = np.argmax(seen, axis=1)
    y = rng.integers(0, c, n).astype(np.int32)
    y[::3] = want[::3]  # some rows right
    y[1::5] = -100      # some ignored, never counted
    t = rng.dirichlet(np.ones(c), n).astype(np.float32)
    t = t.astype(np.float16) if storage == "float16" else (t.view(np.uint32) >> 16).astype(np.uint16) \
        if storage == "bfloat16" else t
    for kw in [{}, dict(softcap=1.0), dict(grad=False, reduction="none")]:
        r = ctx.softmax_xent(x, y, argmax=True, dtype=storage, **kw)
        loss, grad, lse, bias = r  # still four values to unpack
        assert r.argmax.dtype == np.int32 and r.argmax.shape == (n,)
        np.testing.assert_array_equal(r.argmax, want)
        assert r.correct == int(((y != -100) & (want == y)).sum())
        plain = ctx.softmax_xent(x, y, dtype=storage, **kw)
        assert plain.argmax is None and plain.correct is None
        np.testing.assert_array_equal(np.asarray(plain.loss), np.asarray(loss))  # the same bits, NaN in place
        s = ctx.softmax_xent_soft(x, t, argmax=True, dtype=storage, **kw)
        np.testing.assert_array_equal(s.argmax, want)
        assert s.correct is None


def test_argmax_only_on_softmax_losses(ctx):
    r = ctx.sigmoid_xent(np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32))
    assert r.argmax is None and r.correct is None
    with pytest.raises(TypeError):
        ctx.sigmoid_xent(np.zeros(3, np.float32), np.ones(3, np.float32), argmax=True)


def test_argmax_on_the_spatial_layout(ctx):
    """argmax=True with (N, C, d1, d2): the argmax over the classes per position, shaped like the
    labels, and correct counted over every position not ignored."""
    rng = np.random.default_rng(31)
    z = rng.uniform(-5, 5, (3, 7, 4, 5)).astype(np.float32)
    z[0, 2, 1, 1] = z[0, 5, 1, 1] = 9.0  # a tie: the first wins
    y = rng.integers(0, 7, (3, 4, 5))
    y[1, 2] = -100
    r = ctx.softmax_xent(z, y, argmax=True)
    want = z.argmax(axis=1)
    assert r.argmax.shape == (3, 4, 5) and r.argmax[0, 1, 1] == 2
    np.testing.assert_array_equal(r.argmax, want)
    assert r.correct == int(((want == y) & (y != -100)).sum())
    r = ctx.softmax_xent_soft(z, np.full(z.shape, 1 / 7, np.float32), argmax=True)
    np.testing.assert_array_equal(r.argmax, want)
    assert r.correct is None
