"""Shows clxent's loss and gradient next to torch.nn.functional.cross_entropy's on the same batch,
with class weights, label smoothing and ignored rows. Needs PyTorch (CPU is enough); without it,
says so and exits 0.

    CLXENT_LIBRARY=build/libclxent.so PYTHONPATH=python python3 examples/torch_match.py
"""
import sys

import numpy as np

import clxent

try:
    import torch
except ImportError:
    print("PyTorch is not installed: nothing to compare (pip install torch)")
    sys.exit(0)

rng = np.random.default_rng(0)
n, c = 64, 1000
z = rng.normal(0, 3, (n, c)).astype(np.float32)
y = rng.integers(0, c, n)
y[::7] = -100
w = rng.uniform(0.5, 2.0, c).astype(np.float32)

zt = torch.tensor(z, requires_grad=True)
loss = torch.nn.functional.cross_entropy(zt, torch.tensor(y), weight=torch.tensor(w), label_smoothing=0.1)
loss.backward()
with clxent.Context() as ctx:
    r = ctx.softmax_xent(z, y, class_weight=w, label_smoothing=0.1)
diff = np.abs(r.grad - zt.grad.numpy()).max()
print(f"loss: clxent {r.loss:.7f}  torch {loss.item():.7f}")
print(f"gradient: max |clxent - torch| = {diff:.2e} (max |grad| {np.abs(r.grad).max():.2e})")
ok = abs(r.loss - loss.item()) <= 1e-5 * abs(loss.item()) and diff <= 1e-6
print("match" if ok else "MISMATCH")
sys.exit(0 if ok else 1)
