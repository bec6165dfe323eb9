"""Stable sub-seeds: one independent random stream per named component."""

from __future__ import annotations

import hashlib
import random


def sub_seed(seed: int, *names: str) -> int:
    """A 64-bit seed derived from `seed` and `names`, stable across processes and Python runs."""
    h = hashlib.blake2b(digest_size=8)
    h.update(str(seed).encode())
    for n in names:
        h.update(b"\x00")
        h.update(n.encode())
    return int.from_bytes(h.digest(), "big")


def sub_rng(seed: int, *names: str) -> random.Random:
    return random.Random(sub_seed(seed, *names))
