"""How seeds combine, and the elementwise noise kinds: the leaf that every noise stream (torch chunks, Triton) shares.

One function derives every seed from (step seed, tensor name, chunk, ...), so no two streams collide by accident.
"""

from __future__ import annotations

import hashlib

KINDS = ("gaussian", "rademacher")


def derive_seed(*parts: object) -> int:
    """A 63-bit integer from any sequence of ints/strings: the only way seeds are combined here."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
