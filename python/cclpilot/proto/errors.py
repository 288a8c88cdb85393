"""Errors of the wire protocol codec. Each carries a `kind` that the C decoder reports too."""

from __future__ import annotations

from cclpilot.errors import CclpilotError

# The closed set of rejection kinds (PROTOCOL.md, "Rejection kinds"). Golden invalid vectors name
# one of these, so the Python and C decoders can be checked against the same expectations.
ERROR_KINDS: tuple[str, ...] = (
    "malformed",
    "limit",
    "unknown_type",
    "missing_field",
    "extra_field",
    "wrong_type",
    "bad_value",
    "version",
)


class ProtocolError(CclpilotError):
    """A message was rejected: it is not a well-formed protocol message or breaks its schema.

    `kind` is one of ERROR_KINDS; `path` locates the offending field (dotted, "" for the whole
    message). The text says what was wrong and what the sender must change.
    """

    def __init__(self, kind: str, message: str, path: str = "") -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"internal: unknown protocol error kind {kind!r}")
        self.kind = kind
        self.path = path
        where = f" at '{path}'" if path else ""
        super().__init__(f"protocol {kind}{where}: {message}")
