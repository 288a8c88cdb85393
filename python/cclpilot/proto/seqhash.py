"""The rolling hash of a rank's call sequence carried by ACK (PROTOCOL.md, "Call-sequence hash").

Ranks of one communicator must issue the same collectives in the same order; equal hashes at
equal call counts are how the daemon sees that they do. FNV-1a's step over whole 64-bit words is
trivial to write identically in C and Python, and cheap enough for the plugin's hot path.
"""

from __future__ import annotations

SEQ_HASH_INIT = 0xCBF29CE484222325
_PRIME = 0x100000001B3
_MASK = (1 << 64) - 1


def seq_hash_update(h: int, coll: int, n_bytes: int, num_pipe_ops: int) -> int:
    """Folds one getCollInfo call into the hash, one 64-bit word per value."""
    for value in (coll, n_bytes, num_pipe_ops):
        h = ((h ^ (value & _MASK)) * _PRIME) & _MASK
    return h
