"""A handwritten-digit classifier trained end to end on scikit-learn's bundled 8x8 digits (1797
images, 10 classes; shipped with the package, no download): one hidden layer of 64 ReLUs, trained
by mini-batch SGD twice from the same initial weights and batches, once in NumPy with
clxent.Context.softmax_xent giving the loss and the gradient of the logits (backpropagated through
the layers by hand), once as a PyTorch model with clxent.torch.CrossEntropyLoss. Prints the loss
falling and the held-out accuracy of both, and draws both loss curves to a PNG. Exit 1 if either
did not learn (held-out accuracy under 90%).

    CLXENT_LIBRARY=build/libclxent.so PYTHONPATH=python python3 examples/digits.py [PNG]

PNG defaults to docs/digits_loss.png. Needs scikit-learn (Debian: python3-sklearn); the PyTorch
part needs torch (python3-torch) and the PNG matplotlib (python3-matplotlib): each is skipped
with a message when missing.
"""
import os
import sys
import time

import numpy as np

import clxent

try:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
except Exception as e:  # ImportError, or a build against another NumPy
    print(f"scikit-learn is not usable here ({type(e).__name__}: {e}): this example needs its bundled digits "
          f"(pip install scikit-learn, or Debian's python3-sklearn)")
    sys.exit(0)

HIDDEN, EPOCHS, BATCH, LR, SEED, EVERY = 64, 30, 32, 0.1, 0, 5
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
png = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPOSITORY, "docs", "digits_loss.png")

digits = load_digits()
x = (digits.data / 16.0).astype(np.float32)  # pixels 0..16 -> [0, 1]
x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.25, random_state=SEED,
                                                    stratify=digits.target)
rng = np.random.default_rng(SEED)
init = {"W1": (rng.normal(0, np.sqrt(2 / 64), (64, HIDDEN))).astype(np.float32),
        "b1": np.zeros(HIDDEN, np.float32),
        "W2": (rng.normal(0, np.sqrt(1 / HIDDEN), (HIDDEN, 10))).astype(np.float32),
        "b2": np.zeros(10, np.float32)}
orders = [rng.permutation(len(x_train)) for _ in range(EPOCHS)]  # the same batches for both
print(f"digits: {len(x_train)} training and {len(x_test)} held-out images of 8x8 pixels, 10 classes; "
      f"64-{HIDDEN}-10 ReLU network, SGD lr {LR}, batches of {BATCH}, {EPOCHS} epochs")


def batches(epoch):
    order = orders[epoch]
    for start in range(0, len(order), BATCH):
        yield order[start:start + BATCH]


# ------------------------------------------------------------------------------------------ NumPy

def train_numpy(ctx):
    p = {k: v.copy() for k, v in init.items()}
    curve = []
    for epoch in range(EPOCHS):
        losses = []
        for idx in batches(epoch):
            xb, yb = x_train[idx], y_train[idx]
            h = np.maximum(xb @ p["W1"] + p["b1"], 0)
            z = h @ p["W2"] + p["b2"]
            r = ctx.softmax_xent(z, yb, bias_grad=True)  # mean loss, dJ/dz and its column sums, fused
            dh = (r.grad @ p["W2"].T) * (h > 0)
            p["W2"] -= LR * (h.T @ r.grad)
            p["b2"] -= LR * r.bias_grad
            p["W1"] -= LR * (xb.T @ dh)
            p["b1"] -= LR * dh.sum(0)
            losses.append(r.loss)
        curve.append(float(np.mean(losses)))
        if epoch % EVERY == 0 or epoch == EPOCHS - 1:
            print(f"  numpy  epoch {epoch:2d}  training loss {curve[-1]:.4f}")
    logits = np.maximum(x_test @ p["W1"] + p["b1"], 0) @ p["W2"] + p["b2"]
    return curve, float((logits.argmax(1) == y_test).mean())


# ---------------------------------------------------------------------------------------- PyTorch

def train_torch():
    import torch
    import clxent.torch as ct

    model = torch.nn.Sequential(torch.nn.Linear(64, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 10))
    with torch.no_grad():  # the NumPy run's initial weights (torch keeps them as [out, in])
        model[0].weight.copy_(torch.from_numpy(init["W1"].T))
        model[0].bias.copy_(torch.from_numpy(init["b1"]))
        model[2].weight.copy_(torch.from_numpy(init["W2"].T))
        model[2].bias.copy_(torch.from_numpy(init["b2"]))
    loss_fn = ct.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    curve = []
    for epoch in range(EPOCHS):
        losses = []
        for idx in batches(epoch):
            idx = torch.from_numpy(idx)
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            losses.append(loss.item())
        curve.append(float(np.mean(losses)))
        if epoch % EVERY == 0 or epoch == EPOCHS - 1:
            print(f"  torch  epoch {epoch:2d}  training loss {curve[-1]:.4f}")
    with torch.no_grad():
        predicted = model(torch.from_numpy(x_test)).argmax(1).numpy()
    return curve, float((predicted == y_test).mean())


def draw(curves):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:
        print(f"no PNG: matplotlib is not usable here ({type(e).__name__}: {e})")
        return
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    styles = {"NumPy + clxent.Context.softmax_xent": "-", "PyTorch + clxent.torch.CrossEntropyLoss": "--"}
    for name, (curve, accuracy) in curves.items():
        label = f"{name} (held-out accuracy {100 * accuracy:.1f}%)"
        ax.plot(range(1, len(curve) + 1), curve, styles[name], label=label)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean training cross-entropy")
    ax.set_title("8x8 digits, 64-64-10 ReLU network, same initial weights and batches", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
    fig.savefig(png)
    print(f"loss curves drawn to {png}")


start = time.perf_counter()
curves = {}
with clxent.Context() as ctx:
    print(f"NumPy, clxent on {ctx.device_name}:")
    curves["NumPy + clxent.Context.softmax_xent"] = train_numpy(ctx)
try:
    import clxent.torch  # noqa: F401  (ImportError without PyTorch)
except ImportError:
    print("PyTorch is not installed: the PyTorch part is skipped (pip install ./python[torch], or python3-torch)")
else:
    print("PyTorch, clxent.torch.CrossEntropyLoss:")
    curves["PyTorch + clxent.torch.CrossEntropyLoss"] = train_torch()
ok = True
for name, (curve, accuracy) in curves.items():
    learned = accuracy > 0.9 and curve[-1] < 0.25 * curve[0]
    ok &= learned
    print(f"{name}: loss {curve[0]:.4f} -> {curve[-1]:.4f}, held-out accuracy {100 * accuracy:.1f}%"
          f"{'' if learned else ': did NOT learn'}")
draw(curves)
print(f"{time.perf_counter() - start:.1f} s")
sys.exit(0 if ok else 1)
