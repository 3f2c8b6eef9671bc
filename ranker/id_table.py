"""Finding document IDs in a large forward index by a 64-bit hash of each ID.

A binary search over fixed-width byte strings compares up to ``width`` bytes at each of its
``log2(n)`` steps; over a million IDs that dominates the look-up of 1,000 candidates. An
:class:`IdHashTable` hashes every stored ID once (FNV-1a over the fixed-width bytes, vectorised
column by column) and sorts the hashes, so a look-up is a binary search over ``uint64`` values
(for the candidates' hashes in increasing order, which numpy's search turns into narrower searches
that touch fewer cache lines) followed by one byte-string comparison per candidate to confirm the
match. The rare key whose hash
equals a stored hash of another ID (a collision) is resolved by the exact string search.

It costs 12 bytes per document (the hash and an ``int32`` position; ``int64`` beyond 2**31
documents) and one pass over the IDs when built.
"""

from __future__ import annotations

import numpy as np

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)


def fnv1a(keys: np.ndarray) -> np.ndarray:
    """64-bit FNV-1a of each fixed-width bytes key (``S<w>`` array), over all ``w`` bytes (NUL padding included)."""
    keys = np.ascontiguousarray(keys)
    width = keys.dtype.itemsize
    columns = keys.view(np.uint8).reshape(len(keys), width)
    out = np.full(len(keys), FNV_OFFSET, dtype=np.uint64)
    for j in range(width):
        out ^= columns[:, j].astype(np.uint64)
        out *= FNV_PRIME  # wraps modulo 2**64
    return out


class IdHashTable:
    """Sorted 64-bit hashes of ``sorted_ids`` (a forward index's sorted ID array) and their positions in it."""

    def __init__(self, sorted_ids: np.ndarray, chunk: int = 1 << 20) -> None:
        self.sorted_ids = sorted_ids
        n = len(sorted_ids)
        hashes = np.empty(n, dtype=np.uint64)
        for lo in range(0, n, chunk):  # the ids may be memory-mapped: hash them a chunk at a time
            hashes[lo:lo + chunk] = fnv1a(np.asarray(sorted_ids[lo:lo + chunk]))
        order = np.argsort(hashes, kind="stable")
        self.hashes = hashes[order]
        self.positions = order.astype(np.int32 if n < 2**31 else np.int64)

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(found, at)`` for keys of the stored width: ``sorted_ids[at[i]] == keys[i]`` where ``found[i]``."""
        if len(self.hashes) == 0:
            return np.zeros(len(keys), dtype=bool), np.zeros(len(keys), dtype=np.int64)
        h = fnv1a(keys)
        order = np.argsort(h)  # increasing keys: each search starts where the previous one ended
        slot = np.empty(len(h), dtype=np.int64)
        slot[order] = np.minimum(np.searchsorted(self.hashes, h[order]), len(self.hashes) - 1)
        at = self.positions[slot].astype(np.int64)
        found = self.sorted_ids[at] == keys
        collided = ~found & (self.hashes[slot] == h)
        if collided.any():  # another ID has the same hash: the exact search decides
            exact = np.minimum(np.searchsorted(self.sorted_ids, keys[collided]), len(self.sorted_ids) - 1)
            at[collided] = exact
            found[collided] = self.sorted_ids[exact] == keys[collided]
        return found, at
