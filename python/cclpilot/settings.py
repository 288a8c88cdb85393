"""The settings registry, read from the same file the plugin compiles in (settings.def)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .paths import settings_registry

_ENTRY = re.compile(
    r'^CP_SETTING\(\s*(?P<id>[A-Z_][A-Z0-9_]*)\s*,\s*"(?P<env>[A-Z0-9_]+)"\s*,\s*'
    r'(?P<kind>enum|path|uint|str)\s*,\s*"(?P<default>[^"]*)"\s*,\s*"(?P<allowed>[^"]*)"\s*,\s*'
    r'"(?P<doc>(?:[^"\\]|\\.)*)"\s*\)\s*$'
)


@dataclass(frozen=True)
class Setting:
    ident: str
    env: str
    kind: str
    default: str
    allowed: str
    doc: str

    def validate(self, value: str) -> str:
        """Returns the value if valid for this setting, else raises ConfigError saying why."""
        if self.kind == "enum":
            choices = self.allowed.split("|")
            if value.lower() not in choices:
                raise ConfigError(
                    f"{self.env}={value!r} is not one of {'|'.join(choices)}; pick one of those."
                )
            return value.lower()
        if self.kind == "uint":
            lo_text, _, hi_text = self.allowed.partition("..")
            if not value.isdigit() or not int(lo_text) <= int(value) <= int(hi_text):
                raise ConfigError(
                    f"{self.env}={value!r} is not a whole number in {self.allowed}; "
                    "set it within that range."
                )
            return value
        return value


def parse_registry(text: str, source: str = "settings.def") -> dict[str, Setting]:
    """Parses the registry; any line starting with CP_SETTING that does not parse is an error."""
    found: dict[str, Setting] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped.startswith("CP_SETTING("):
            continue
        match = _ENTRY.match(stripped)
        if match is None:
            raise ConfigError(f"{source}:{number}: malformed CP_SETTING entry")
        setting = Setting(
            ident=match["id"], env=match["env"], kind=match["kind"], default=match["default"],
            allowed=match["allowed"], doc=match["doc"].replace('\\"', '"'),
        )
        if setting.env in found:
            raise ConfigError(f"{source}:{number}: {setting.env} is declared twice")
        found[setting.env] = setting
    if not found:
        raise ConfigError(f"{source}: no CP_SETTING entries found")
    return found


def registry(path: Path | None = None) -> dict[str, Setting]:
    """All settings, keyed by environment variable name."""
    path = path or settings_registry()
    return parse_registry(path.read_text(encoding="utf-8"), str(path))


def current(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The CCLPILOT_* settings that are set, validated; unknown CCLPILOT_* names are an error."""
    env = os.environ if environ is None else environ
    known = registry()
    chosen: dict[str, str] = {}
    for name, value in sorted(env.items()):
        if not name.startswith("CCLPILOT_"):
            continue
        if name not in known:
            raise ConfigError(
                f"{name} is not a cclpilot setting (known: {', '.join(sorted(known))}); "
                "remove it or fix its spelling."
            )
        chosen[name] = known[name].validate(value)
    return chosen
