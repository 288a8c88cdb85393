"""The cclpilot wire protocol: logical messages, codec and version (see proto/PROTOCOL.md)."""

from __future__ import annotations

from cclpilot.proto.codec import decode, encode, unpack
from cclpilot.proto.errors import ERROR_KINDS, ProtocolError
from cclpilot.proto.messages import (
    FEATURES,
    LIMITS,
    MESSAGE_TYPES,
    Abort,
    Ack,
    Arm,
    Commit,
    Error,
    Heartbeat,
    Hello,
    KeyReport,
    Measurements,
    Message,
    Prepare,
    Rule,
    Stat,
    Welcome,
)
from cclpilot.proto.seqhash import SEQ_HASH_INIT, seq_hash_update
from cclpilot.proto.version import PROTOCOL_MAJOR, PROTOCOL_MINOR, PROTOCOL_VERSION

__all__ = [
    "ERROR_KINDS", "FEATURES", "LIMITS", "MESSAGE_TYPES", "PROTOCOL_MAJOR", "PROTOCOL_MINOR",
    "PROTOCOL_VERSION", "SEQ_HASH_INIT", "Abort", "Ack", "Arm", "Commit", "Error", "Heartbeat",
    "Hello", "KeyReport", "Measurements", "Message", "Prepare", "ProtocolError", "Rule", "Stat",
    "Welcome", "decode", "encode", "seq_hash_update", "unpack",
]
