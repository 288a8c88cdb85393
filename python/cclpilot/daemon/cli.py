"""`cclpilot daemon`: serve the live loop for one job (docs/daemon.md)."""

from __future__ import annotations

import argparse
import importlib
import logging
from pathlib import Path

from cclpilot.daemon.brain import BrainFactory, NullBrain
from cclpilot.daemon.server import DaemonConfig, serve
from cclpilot.errors import ConfigError


def load_brain_factory(spec: str, seed: int = 0) -> BrainFactory:
    """'online' (the first online tuner), 'null', or 'package.module:callable' (a BrainFactory:
    CommInfo -> Brain)."""
    if spec == "null":
        return NullBrain
    if spec == "online":
        from cclpilot.tuner.online import TunerConfig, online_tuner_factory
        return online_tuner_factory(TunerConfig(seed=seed))
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"--brain {spec!r}: give 'online', 'null' or 'package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"--brain {spec!r}: cannot import {module_name} ({e})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"--brain {spec!r}: {module_name} has no callable {attr!r}")
    result: BrainFactory = factory
    return result


def config_from_args(args: argparse.Namespace) -> DaemonConfig:
    for name in ("heartbeat_ms", "report_ms", "ack_timeout_ms", "summary_ms"):
        value = getattr(args, name)
        if not 1 <= value <= 600_000:
            raise ConfigError(f"--{name.replace('_', '-')} {value}: must be 1..600000")
    if args.insecure and args.tcp is None:
        raise ConfigError("--insecure only applies to --tcp; ipc:// is protected by its "
                          "private directory")
    return DaemonConfig(
        run_dir=Path(args.run_dir) if args.run_dir else None, tcp=args.tcp,
        insecure=args.insecure, ipc_dir=Path(args.ipc_dir) if args.ipc_dir else None,
        heartbeat_ms=args.heartbeat_ms, report_ms=args.report_ms,
        ack_timeout_ms=args.ack_timeout_ms, lead_margin_ms=args.lead_margin_ms,
        min_lead_calls=args.min_lead_calls, summary_ms=args.summary_ms,
        fsync=not args.no_fsync, seed=args.seed, packed_stats=not args.no_packed_stats,
        brain_factory=load_brain_factory(args.brain, args.seed))


def _cmd_daemon(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s cclpilot-daemon %(levelname)s %(message)s")
    serve(config_from_args(args))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("daemon", help="run the live-tuning daemon for one job",
                       description="Serves the plugin's live loop. Prints the export lines "
                       "the job needs (also written to RUN_DIR/env.sh).")
    p.add_argument("--run-dir", help="artifacts directory; an existing one is resumed from its "
                   "journal (default ./cclpilot-runs/live-<time>-<pid>)")
    p.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP (multi-node jobs); "
                   "encrypted with a CURVE key pair generated for this run")
    p.add_argument("--insecure", action="store_true", help="with --tcp: no CURVE (plain TCP); "
                   "only on a trusted, isolated network")
    p.add_argument("--ipc-dir", help="private directory (mode 0700) for the ipc socket")
    p.add_argument("--heartbeat-ms", type=int, default=1000)
    p.add_argument("--report-ms", type=int, default=100)
    p.add_argument("--ack-timeout-ms", type=int, default=2000)
    p.add_argument("--lead-margin-ms", type=int, default=200)
    p.add_argument("--min-lead-calls", type=int, default=32)
    p.add_argument("--summary-ms", type=int, default=1000, help="interval of the measurement "
                   "summaries in the run artifacts (measurements.jsonl); the brain still sees "
                   "every report, at its own interval")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--brain", default="online", help="'online' (the online tuner, default), "
                   "'null' (never proposes) or "
                   "'package.module:factory'")
    p.add_argument("--no-packed-stats", action="store_true",
                   help="do not grant the packed_stats feature: plugins then report in the map "
                   "form (MEASUREMENTS, about three times the bytes); for comparisons and for "
                   "captures meant to be read by eye")
    p.add_argument("--no-fsync", action="store_true", help="skip fsync of the journal "
                   "(benchmarks only: a crash can then change an answer)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=_cmd_daemon)
