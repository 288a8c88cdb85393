"""The plugin side of the protocol in Python: for tests, the simulator and the load generator.

`Peer` is one process's DEALER socket; it speaks the protocol strictly (every message goes
through the codec both ways). `run_daemon_process` starts `cclpilot daemon` in a subprocess and
returns once it listens, so tests can kill and restart a real daemon.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import zmq

from cclpilot.errors import CclpilotError
from cclpilot.proto.codec import decode, encode
from cclpilot.proto.messages import Ack, Hello, Message
from cclpilot.proto.version import PROTOCOL_MAJOR, PROTOCOL_MINOR


class Peer:
    """One plugin process: a DEALER connected to the daemon."""

    def __init__(self, endpoint: str, ctx: zmq.Context[zmq.Socket[bytes]] | None = None,
                 server_public_key: str | None = None) -> None:
        self.ctx = ctx or zmq.Context.instance()
        self.sock: zmq.Socket[bytes] = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        # A DEALER blocks sending while it has no connection, and one whose handshake failed
        # (a CURVE server it has no key for) never gets one: bounded, that is zmq.Again.
        self.sock.setsockopt(zmq.SNDTIMEO, 5000)
        if server_public_key is not None:
            pub, sec = zmq.curve_keypair()
            self.sock.curve_serverkey = server_public_key.encode("ascii")
            self.sock.curve_publickey = pub
            self.sock.curve_secretkey = sec
        self.sock.connect(endpoint)

    def send(self, msg: Message) -> None:
        self.sock.send(encode(msg))

    def send_raw(self, *frames: bytes) -> None:
        self.sock.send_multipart(list(frames))

    def recv(self, timeout: float = 5.0, skip_heartbeats: bool = True) -> Message:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000) + 1):
                raise TimeoutError(f"no message from the daemon within {timeout} s")
            msg = decode(self.sock.recv())
            if skip_heartbeats and msg.t == "HEARTBEAT":
                continue
            return msg

    def hello(self, comm: int, n_ranks: int, rank: int | None, job: str = "job",
              features: tuple[str, ...] = ("measure", "plans"), n_nodes: int = 1,
              pid: int | None = None, host: str = "node0") -> Hello:
        msg = Hello(version=[PROTOCOL_MAJOR, PROTOCOL_MINOR], features=list(features), job=job,
                    comm=comm, n_ranks=n_ranks, n_nodes=n_nodes, rank=rank, host=host,
                    pid=pid if pid is not None else os.getpid(), nccl_version=22703,
                    tuner_abi=5, profiler_abi=5)
        self.send(msg)
        return msg

    def ack(self, comm: int, plan: int, ok: bool, calls: int, seq_hash: int,
            reason: str = "") -> None:
        self.send(Ack(comm=comm, plan=plan, ok=ok, calls=calls, seq_hash=seq_hash,
                      reason=reason if not ok else ""))

    def close(self) -> None:
        self.sock.close(0)


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[str]
    endpoint: str
    public_key: str | None
    run_dir: Path

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(10)


def run_daemon_process(run_dir: Path, args: list[str] | None = None,
                       timeout: float = 20.0) -> DaemonProcess:
    """Starts `cclpilot daemon --run-dir RUN_DIR ARGS` and waits until it prints its endpoint."""
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    pkg_root = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = pkg_root + os.pathsep + env.get("PYTHONPATH", "")
    log = open(run_dir / "daemon.log", "a", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "cclpilot.cli", "daemon", "--run-dir",
                             str(run_dir), *(args or [])], stdout=subprocess.PIPE, stderr=log,
                            text=True, env=env)
    log.close()
    assert proc.stdout is not None
    stdout = proc.stdout
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:  # a thread, because select() cannot see text already buffered
        for text in stdout:
            lines.put(text)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    endpoint, key = "", None
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if not line:
            break
        if line.startswith("export CCLPILOT_DAEMON="):
            endpoint = line.split("=", 1)[1].strip()
        elif line.startswith("export CCLPILOT_DAEMON_PUBLIC_KEY="):
            key = line.split("=", 1)[1].strip().strip("'")
        elif line.startswith("# run directory"):
            return DaemonProcess(proc, endpoint, key, run_dir)
    proc.kill()
    proc.wait(10)
    tail = (run_dir / "daemon.log").read_text(encoding="utf-8")[-2000:]
    raise CclpilotError(f"daemon did not start within {timeout} s; its log ends:\n{tail}")
