"""Encoding and strict decoding of protocol messages (PROTOCOL.md, "Encoding" and "Limits").

decode() checks, in this order, and the C decoder follows the same order so both report the same
kind for the same bytes: size, msgpack well-formedness (with per-container limits), nesting depth
and forbidden types, top-level shape, type tag, version (HELLO / WELCOME), schema.
"""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]  # ships no type information
from pydantic import ValidationError

from cclpilot.proto.errors import ProtocolError
from cclpilot.proto.messages import (
    MAX_ARRAY_LEN,
    MAX_DEPTH,
    MAX_MAP_LEN,
    MAX_MESSAGE_BYTES,
    MAX_STR_BYTES,
    MESSAGE_TYPES,
    Message,
)
from cclpilot.proto.version import PROTOCOL_MAJOR

_VERSIONED = ("HELLO", "WELCOME")
_SCALARS = frozenset((int, float, str, bool, type(None)))


def encode(msg: Message) -> bytes:
    """Canonical encoding: fields in schema order, smallest integer forms, floats as float64."""
    data: bytes = msgpack.packb(msg.model_dump(mode="python"), use_bin_type=True)
    if len(data) > MAX_MESSAGE_BYTES:
        # Never emit what every decoder must reject; the caller splits the payload instead.
        raise ProtocolError("limit", f"{msg.t} encodes to {len(data)} bytes, above "
                            f"MAX_MESSAGE_BYTES={MAX_MESSAGE_BYTES}; send fewer entries per message")
    return data


def _no_ext(code: int, data: bytes) -> Any:
    raise ProtocolError("malformed", f"msgpack ext type {code} is not part of the protocol; "
                        "send plain maps, arrays, strings, integers, floats, booleans and nil")


def _pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for k, v in pairs:
        if type(k) is not str:
            raise ProtocolError("malformed", f"map key {k!r} is not a string; every map key is a "
                                "UTF-8 string field name")
        if k in out:
            raise ProtocolError("malformed", f"map key '{k}' appears twice; send each field once")
        out[k] = v
    return out


def unpack(data: bytes) -> Any:
    """msgpack -> Python objects under the protocol's generic limits (no schema)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode() takes bytes, got {type(data).__name__}")
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError("limit", f"message is {len(data)} bytes, above MAX_MESSAGE_BYTES="
                            f"{MAX_MESSAGE_BYTES}")
    if len(data) == 0:
        raise ProtocolError("malformed", "empty frame; a message is one msgpack map")
    try:
        obj = msgpack.unpackb(
            data, raw=False, strict_map_key=False, use_list=True, ext_hook=_no_ext,
            object_pairs_hook=_pairs, max_str_len=MAX_STR_BYTES, max_bin_len=MAX_STR_BYTES,
            max_array_len=MAX_ARRAY_LEN, max_map_len=MAX_MAP_LEN, max_ext_len=MAX_STR_BYTES)
    except ProtocolError:
        raise
    except msgpack.ExtraData as e:
        raise ProtocolError("malformed", f"{len(e.extra)} trailing bytes after the message; a "
                            "frame holds exactly one msgpack object") from None
    except msgpack.StackError:
        raise ProtocolError("limit", f"nesting deeper than MAX_DEPTH={MAX_DEPTH}") from None
    except UnicodeDecodeError:
        raise ProtocolError("malformed", "a string is not valid UTF-8") from None
    except ValueError as e:
        text = str(e)
        if "exceeds max_" in text:
            raise ProtocolError("limit", f"{text} (limits: MAX_ARRAY_LEN={MAX_ARRAY_LEN}, "
                                f"MAX_MAP_LEN={MAX_MAP_LEN}, MAX_STR_BYTES={MAX_STR_BYTES})") from None
        detail = text or "reserved or corrupt type byte"
        raise ProtocolError("malformed", f"not one complete msgpack object ({detail})") from None
    except Exception as e:  # msgpack.FormatError and friends: reserved or corrupt bytes
        raise ProtocolError("malformed", f"not valid msgpack ({type(e).__name__}: {e})") from None
    _check_tree(obj)
    return obj


def _check_tree(obj: Any) -> None:
    # Iterative, so hostile nesting cannot exhaust the Python stack.
    if type(obj) is bytes:
        raise ProtocolError("malformed", "msgpack bin values are not part of the protocol")
    if type(obj) is not dict and type(obj) is not list:
        return
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ProtocolError("limit", f"nesting depth {depth} exceeds MAX_DEPTH={MAX_DEPTH}")
        children = node.values() if isinstance(node, dict) else node
        # Type census in C (map/set) first: most containers hold only scalars, and checking them
        # element by element in Python would dominate decode time for MEASUREMENTS.
        if set(map(type, children)) <= _SCALARS:
            continue
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind is bytes:
                raise ProtocolError("malformed", "msgpack bin values are not part of the "
                                    "protocol; text fields are UTF-8 strings")


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _kind_of(err_type: str, value: object = None) -> str:
    if err_type == "missing":
        return "missing_field"
    if err_type == "extra_forbidden":
        return "extra_field"
    if err_type in ("too_long", "string_too_long"):
        return "limit"
    if err_type.endswith("_type") or err_type in ("model_attributes_type", "dict_type"):
        return "wrong_type"
    # The string enums (ERROR's code) are Literals: a value that is not even a string has the
    # wrong msgpack type, as the C decoder reports it (PROTOCOL.md part 2, stage 6).
    if err_type == "literal_error" and not isinstance(value, str):
        return "wrong_type"
    return "bad_value"


def decode(data: bytes) -> Message:
    """Bytes of one frame -> a validated message, or ProtocolError naming what was wrong."""
    obj = unpack(data)
    if type(obj) is not dict:
        raise ProtocolError("wrong_type", f"top level is a msgpack {type(obj).__name__}, not a "
                            "map; a message is a map with a 't' type tag")
    if "t" not in obj:
        raise ProtocolError("missing_field", "no 't' type tag", "t")
    tag = obj["t"]
    if type(tag) is not str:
        raise ProtocolError("wrong_type", f"type tag is {type(tag).__name__}, not a string", "t")
    cls = MESSAGE_TYPES.get(tag)
    if cls is None:
        known = ", ".join(MESSAGE_TYPES)
        raise ProtocolError("unknown_type", f"unknown message type {tag[:40]!r}; protocol "
                            f"{PROTOCOL_MAJOR}.x knows {known}", "t")
    if tag in _VERSIONED:
        _check_version(obj)
    try:
        msg = cls.model_validate(obj)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        kind = _kind_of(first["type"], first.get("input"))
        path = _loc(tuple(first["loc"]))
        raise ProtocolError(kind, f"{tag}: {first['msg']}; see PROTOCOL.md, message {tag}",
                            path) from None
    return msg  # type: ignore[return-value]


def _check_version(obj: dict[str, Any]) -> None:
    # Before the schema: a peer of another major may use another schema, and what it must be told
    # is "wrong version", not "unexpected field".
    v = obj.get("version")
    if (type(v) is list and len(v) == 2 and type(v[0]) is int and type(v[1]) is int
            and v[0] != PROTOCOL_MAJOR):
        raise ProtocolError("version", f"peer speaks protocol {v[0]}.{v[1]}, this side "
                            f"{PROTOCOL_MAJOR}.x; majors must match: upgrade the older side",
                            "version")
