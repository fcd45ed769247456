"""A small next-character model trained with clxent's fused linear + cross-entropy (issue 17).

The text is this repository's README.md. Each character is predicted from the two before it:
h = tanh(E[c1] + F[c2]) (two embeddings of width d), logits = W h + b over the characters seen,
and `Context.linear_xent` gives the loss and dJ/dh, dJ/dW, dJ/db in one call without storing
the logits; NumPy does the rest (the embeddings' gradient, Adam). The loss falls from ln(vocabulary)
toward the text's character-trigram entropy.

    CLXENT_LIBRARY=$PWD/build/libclxent.so PYTHONPATH=python python3 examples/next_char.py

about 3 s on the 2-core CI machine; it exits 1 unless the loss falls by at least a quarter.
"""
import os
import sys

import numpy as np

import clxent

here = os.path.dirname(os.path.abspath(__file__))
text = open(os.path.join(here, "..", "README.md"), encoding="utf-8").read()
chars = sorted(set(text))
index = {ch: k for k, ch in enumerate(chars)}
ids = np.array([index[ch] for ch in text], dtype=np.int32)
v, d, batch, steps = len(chars), 64, 512, 300
rng = np.random.default_rng(0)
params = {"E": rng.normal(0, 0.5, (v, d)), "F": rng.normal(0, 0.5, (v, d)),
          "W": rng.normal(0, 0.1, (v, d)), "b": np.zeros(v)}
params = {k: p.astype(np.float32) for k, p in params.items()}
moments = {k: (np.zeros_like(p), np.zeros_like(p)) for k, p in params.items()}


def adam(step, grads, lr=0.01, b1=0.9, b2=0.999):
    for k, g in grads.items():
        m, s = moments[k]
        m *= b1
        m += (1 - b1) * g
        s *= b2
        s += (1 - b2) * g * g
        params[k] -= lr * (m / (1 - b1 ** step)) / (np.sqrt(s / (1 - b2 ** step)) + 1e-8)


first = last = None
with clxent.Context() as ctx:
    for step in range(1, steps + 1):
        at = rng.integers(2, len(ids), batch)
        c1, c2, y = ids[at - 1], ids[at - 2], ids[at]
        pre = params["E"][c1] + params["F"][c2]
        h = np.tanh(pre).astype(np.float32)
        r = ctx.linear_xent(h, params["W"], y, params["b"], label_smoothing=0.0)
        dpre = r.grad_hidden * (1 - h * h)
        dE, dF = np.zeros_like(params["E"]), np.zeros_like(params["F"])
        np.add.at(dE, c1, dpre)
        np.add.at(dF, c2, dpre)
        adam(step, {"W": r.grad_weight, "b": r.grad_bias, "E": dE, "F": dF})
        first = r.loss if first is None else first
        last = r.loss
        if step % 50 == 0 or step == 1:
            print(f"step {step:4d}  loss {r.loss:.3f}")

    # a sample: the most likely characters after a prompt, greedily, then sampled
    out = list("clxent ")
    for _ in range(80):
        h = np.tanh(params["E"][index[out[-1]]] + params["F"][index[out[-2]]]).astype(np.float32)
        z = params["W"] @ h + params["b"]
        p = np.exp(z - z.max())
        out.append(chars[rng.choice(v, p=p / p.sum())])
    print("sample:", "".join(out).replace("\n", " "))
print(f"vocabulary {v} characters (ln v = {np.log(v):.3f}); loss {first:.3f} -> {last:.3f}")
sys.exit(0 if last < 0.75 * first else 1)
