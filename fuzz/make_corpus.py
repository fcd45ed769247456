"""Writes the seed corpus of fuzz_api.c: one valid call of each function, with and without
options, in each storage type (the layout fuzz_api.c reads, big-endian fields)."""
import os
import random
import struct

random.seed(1)
here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(here, exist_ok=True)


def seed(function, n, c, reduction=0, flags=0b0010, dtype=0, options=(0, 0, 0), weights=None, labels=None):
    b = bytearray([function, n - 1]) + struct.pack(">H", c - 1) + bytes([reduction, 0, flags])
    if flags & 64:
        b += bytes(weights or [200] * c)  # option bytes: 200 is 3 * 73/100, below 128 is 0
    if function <= 1:
        for mode in options:  # label_smoothing, z_loss, softcap as "sensible" fractions
            b += bytes([mode])
    b += bytes([dtype])
    for _ in range(n * c):
        b += struct.pack(">f", random.uniform(-6, 6) if function != 3 else random.uniform(0, 1))
    b += bytes(random.randrange(5) for _ in range(n * c))
    for i in range(n):
        b += struct.pack(">H", 2 + (labels[i] if labels else random.randrange(c)))
    return bytes(b)


seeds = {
    "hard_plain": seed(0, 5, 7),
    "hard_all_options": seed(0, 6, 33, flags=0b1011010, options=(137, 140, 180)),
    "hard_sum_in_place": seed(0, 3, 9, reduction=1, flags=0b0100),
    "hard_bf16": seed(0, 4, 17, dtype=2, flags=0b11010),
    "soft_f16_smoothing": seed(1, 4, 8, dtype=1, options=(150, 0, 0), flags=0b1010),
    "sigmoid_pos_weight": seed(2, 8, 3, flags=0b1010011),
    "bce_none": seed(3, 5, 2, reduction=2),
    "hard_one_class": seed(0, 9, 1, flags=0b11010),
    # every labelled class weighs 0 but smoothing spreads loss over the others: MEAN = x / 0 = inf
    "hard_zero_weight_divisor": seed(0, 4, 3, flags=0b1000011, options=(150, 0, 0), weights=[0, 200, 200],
                                     labels=[0, 0, 0, 0]),
}
for name, data in seeds.items():
    with open(os.path.join(here, name), "wb") as f:
        f.write(data)
print(f"{len(seeds)} seeds in {here}")
