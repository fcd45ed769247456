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

# fuzz_cache.c: cache files for the key it uses, one valid and the damage the loader must refuse.
import hashlib

cache_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus_cache")
os.makedirs(cache_dir, exist_ok=True)
key = b"clxent-program-cache 4\ndevice=fuzz\n"
binary = bytes(random.randrange(256) for _ in range(300))
valid = key + b"binary=%d\nsha256=%s\n" % (len(binary), hashlib.sha256(binary).hexdigest().encode()) + binary
cache_seeds = {
    "valid": valid,
    "cut_short": valid[: len(valid) - 17],
    "bit_flipped": valid[:-5] + bytes([valid[-5] ^ 1]) + valid[-4:],
    "long_length": valid.replace(b"binary=300", b"binary=99999999999999999999"),
    "other_key": valid.replace(b"device=fuzz", b"device=fuzy"),
}
for name, data in cache_seeds.items():
    with open(os.path.join(cache_dir, name), "wb") as f:
        f.write(data)
print(f"{len(cache_seeds)} seeds in {cache_dir}")

# fuzz_env.c: byte 0 the variable, byte 1 the config, 31 bytes of tuning, then the value.
env_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus_env")
os.makedirs(env_dir, exist_ok=True)
names = ["VARIANT", "VEC", "GROUP_SIZE", "ROW_THREADS", "MAX_ALLOC", "BLOCK_BYTES", "ZERO_COPY", "SPLIT",
         "CACHE", "CACHE_DIR", "BUILD_OPTIONS", "OWN_MATH"]
values = {"VARIANT": b"group", "VEC": b"8", "GROUP_SIZE": b"9223372036854775808", "ROW_THREADS": b"8abc",
          "MAX_ALLOC": b"18446744073709551616", "BLOCK_BYTES": b"4096", "ZERO_COPY": b"1", "SPLIT": b"1,2.5,1e-3",
          "CACHE": b"0", "CACHE_DIR": b"/tmp/x", "BUILD_OPTIONS": b"-DX=1", "OWN_MATH": b"2"}
# byte 1: what the config sets; OWN_MATH's also sets tuning->own_math (bit 3) to OFF (2, bits 4-5)
config = {"OWN_MATH": 1 | 8 | 2 << 4}
for i, name in enumerate(names):
    tuning = bytes([1, 8]) + (64).to_bytes(8, "big") + (4).to_bytes(8, "big") + (4096).to_bytes(8, "big") + bytes([2, 2]) + bytes(8)
    with open(os.path.join(env_dir, name.lower()), "wb") as f:
        f.write(bytes([i, config.get(name, i % 8)]) + tuning + values[name])
print(f"{len(names)} seeds in {env_dir}")

# fuzz_api.c inputs that once failed, spelled out byte by byte (no random numbers, so that every
# seed above keeps its bytes). Each runs in every build through fuzz_corpus_replay.
regressions = {
    # softcap 3.59e-40, a subnormal (option mode 230: the float's own bits follow): z·(1/s) was
    # 0·inf, the loss NaN against the reference's 0 (CI, 2026-11-27). Now rejected by validation.
    "hard_subnormal_softcap": bytes([0, 10 - 1]) + struct.pack(">H", 0) + bytes([0, 0, 0b0010])
    + bytes([0, 0, 230]) + struct.pack(">f", 3.59013e-40) + bytes([0])
    + struct.pack(">f", 0.0) * 10 + bytes(10) + struct.pack(">H", 2) * 10,
}
for name, data in regressions.items():
    with open(os.path.join(here, name), "wb") as f:
        f.write(data)
print(f"{len(regressions)} regression inputs in {here}")
