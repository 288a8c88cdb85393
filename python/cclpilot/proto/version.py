"""The protocol version, read from the one file that holds it (proto/VERSION).

The C side reads the same file at CMake configure time, so the two can never disagree. An
installed package carries a copy as cclpilot/lib/PROTOCOL_VERSION (installed by CMake next to
settings.def); a source checkout reads the repository's.
"""

from __future__ import annotations

import re
from pathlib import Path

from cclpilot.proto.errors import ProtocolError

_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_CANDIDATES = (_PACKAGE_DIR / "lib" / "PROTOCOL_VERSION",
               _PACKAGE_DIR.parent.parent / "proto" / "VERSION")
_FORMAT = re.compile(r"([0-9]{1,5})\.([0-9]{1,5})\n?")


def version_file() -> Path:
    for path in _CANDIDATES:
        if path.is_file():
            return path
    tried = ", ".join(str(p) for p in _CANDIDATES)
    raise ProtocolError("version", f"protocol VERSION file not found (tried {tried}); "
                        "reinstall cclpilot or run from a complete source checkout")


def parse_version(text: str, source: str = "VERSION") -> tuple[int, int]:
    m = _FORMAT.fullmatch(text)
    if m is None:
        raise ProtocolError("version", f"{source} must hold exactly 'MAJOR.MINOR' and a newline, "
                            f"got {text[:40]!r}")
    major, minor = int(m.group(1)), int(m.group(2))
    if major > 0xFFFF or minor > 0xFFFF:
        raise ProtocolError("version", f"{source}: major and minor must each be <= 65535")
    return major, minor


def _load() -> tuple[int, int]:
    path = version_file()
    return parse_version(path.read_text(encoding="ascii"), str(path))


PROTOCOL_MAJOR, PROTOCOL_MINOR = _load()
PROTOCOL_VERSION: tuple[int, int] = (PROTOCOL_MAJOR, PROTOCOL_MINOR)
