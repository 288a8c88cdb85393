"""`cclpilot` command line."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import CclpilotError, ConfigError
from .paths import plugin_library
from .settings import registry
from . import demo
from .daemon import cli as daemon_cli
from .sim import cli as sim_cli


def _cmd_env(args: argparse.Namespace) -> int:
    settings = registry()
    lib = plugin_library()
    lines = [
        f"export NCCL_TUNER_PLUGIN={shlex.quote(str(lib))}",
        # The same absolute path: dlopen then returns the same handle, so the tuner and profiler
        # halves share one process object.
        f"export NCCL_PROFILER_PLUGIN={shlex.quote(str(lib))}",
    ]
    chosen: dict[str, str] = {}
    if args.mode is not None:
        chosen["CCLPILOT_MODE"] = settings["CCLPILOT_MODE"].validate(args.mode)
    if args.table is not None:
        table = Path(args.table).resolve()
        if not table.is_file():
            raise ConfigError(f"--table {args.table}: no such file; give the path of a table file.")
        chosen["CCLPILOT_TABLE"] = str(table)
        chosen.setdefault("CCLPILOT_MODE", "static")
    if args.stats_file is not None:
        chosen["CCLPILOT_STATS_FILE"] = str(Path(args.stats_file).resolve())
    for name, value in chosen.items():
        lines.append(f"export {name}={shlex.quote(value)}")
    print("\n".join(lines))
    return 0


def _cmd_settings(args: argparse.Namespace) -> int:
    for setting in registry().values():
        allowed = f" [{setting.allowed}]" if setting.allowed else ""
        default = setting.default or "(unset)"
        print(f"{setting.env}{allowed}, default {default}\n    {setting.doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cclpilot", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cclpilot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    env = sub.add_parser("env", help="print the export lines that load cclpilot into an NCCL job")
    env.add_argument("--mode", help="off|observe|static|live")
    env.add_argument("--table", help="table file for static mode (implies --mode static)")
    env.add_argument("--stats-file", help="where observe mode writes per-key statistics")
    env.set_defaults(func=_cmd_env)

    st = sub.add_parser("settings", help="list every CCLPILOT_* setting")
    st.set_defaults(func=_cmd_settings)

    sim_cli.register(sub)
    daemon_cli.register(sub)
    demo.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except CclpilotError as exc:
        print(f"cclpilot: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
