"""The attendance classifier of examples/attendance.c, in Python: clxent computes the mean
cross-entropy, its gradient and the bias gradient; NumPy does the rest. Exit 1 if it did not learn.

    CLXENT_LIBRARY=build/libclxent.so PYTHONPATH=python python3 examples/attendance.py
"""
import sys

import numpy as np

import clxent

rng = np.random.default_rng(42)
n = 2000
distance, sleep, rain = rng.uniform(0, 10, n), rng.uniform(4, 9, n), rng.uniform(0, 1, n) < 0.3
lateness = 0.35 * distance - 0.6 * (sleep - 6.5) + 1.5 * rain + 0.8 * (rng.uniform(0, 1, n) - 0.5)
y = np.where(lateness < 1.5, 0, np.where(lateness < 3.2, 1, 2)).astype(np.int32)
x = np.stack([distance / 10, (sleep - 6.5) / 2.5, rain.astype(float)], axis=1).astype(np.float32)

W, b = np.zeros((3, 3), np.float32), np.zeros(3, np.float32)
with clxent.Context() as ctx:
    print(f"training on {ctx.device_name}")
    for epoch in range(301):
        logits = x @ W + b
        accuracy = float((logits.argmax(1) == y).mean())
        r = ctx.softmax_xent(logits, y, in_place=True, bias_grad=True)
        if epoch == 0:
            first = r.loss
        if epoch % 100 == 0:
            print(f"  epoch {epoch:3d}  loss {r.loss:.4f}  accuracy {100 * accuracy:.1f}%")
        W -= 2.0 * x.T @ r.grad
        b -= 2.0 * r.bias_grad
learned = r.loss < 0.6 * first and accuracy > 0.8
print(f"loss {first:.4f} -> {r.loss:.4f}, accuracy {100 * accuracy:.1f}%: {'learned' if learned else 'did NOT learn'}")
sys.exit(0 if learned else 1)
