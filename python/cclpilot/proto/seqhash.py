"""The rolling hash of a rank's call sequence carried by ACK (PROTOCOL.md, "Call-sequence hash").

Ranks of one communicator must issue the same collectives in the same order; equal hashes at
equal call counts are how the daemon sees that they do. FNV-1a 64 is used because it is trivial
to write identically in C and Python and needs no table.
"""

from __future__ import annotations

SEQ_HASH_INIT = 0xCBF29CE484222325
_PRIME = 0x100000001B3
_MASK = (1 << 64) - 1


def seq_hash_update(h: int, coll: int, n_bytes: int, num_pipe_ops: int) -> int:
    """Folds one getCollInfo call into the hash: each value as 8 little-endian bytes."""
    for value in (coll, n_bytes, num_pipe_ops):
        for b in (value & _MASK).to_bytes(8, "little"):
            h = ((h ^ b) * _PRIME) & _MASK
    return h
