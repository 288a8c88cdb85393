"""Where the daemon listens and how it is protected: private ipc directories and CURVE keys.

Default transport is ``ipc://`` in a directory only the daemon's user can enter (mode 0700): on a
single node the file system is the access control. TCP (multi-node jobs) is encrypted with
ZeroMQ CURVE using a server key pair generated per daemon run; the secret key never leaves the
run directory (mode 0600), the public key goes to the job through CCLPILOT_DAEMON_PUBLIC_KEY.
Plain TCP is refused unless the user says --insecure.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import zmq

from cclpilot.errors import ConfigError

# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
_IPC_PATH_MAX = 107


@dataclass(frozen=True)
class CurveKeys:
    """Z85-encoded server key pair (40 characters each)."""

    public: str
    secret: str


def private_ipc_dir(base: Path | None = None) -> Path:
    """A fresh directory with mode 0700 under $XDG_RUNTIME_DIR (or the temp directory)."""
    if base is None:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        base = Path(runtime) if runtime and Path(runtime).is_dir() else Path(tempfile.gettempdir())
    path = Path(tempfile.mkdtemp(prefix="cclpilot-", dir=str(base)))
    os.chmod(path, 0o700)  # mkdtemp already does; explicit because the socket's safety rests on it
    return path


def ipc_endpoint(directory: Path) -> str:
    sock = directory / "daemon.sock"
    if len(str(sock).encode()) > _IPC_PATH_MAX:
        raise ConfigError(f"ipc socket path {sock} is longer than {_IPC_PATH_MAX} bytes (the "
                          "limit of a Unix socket path); set XDG_RUNTIME_DIR or TMPDIR to a "
                          "shorter directory")
    return f"ipc://{sock}"


def check_private_dir(directory: Path) -> None:
    """Refuses a directory that other users could enter (they could connect to the socket)."""
    st = directory.stat()
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{directory} has mode {stat.S_IMODE(st.st_mode):o}; the daemon's "
                          "socket directory must be private (chmod 700)")
    if st.st_uid != os.getuid():
        raise ConfigError(f"{directory} belongs to uid {st.st_uid}, not to this user")


def parse_tcp(spec: str) -> tuple[str, int]:
    """'HOST:PORT' -> (host, port), with a message that says what to write instead."""
    host, sep, port_text = spec.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"--tcp {spec!r}: expected HOST:PORT, for example 0.0.0.0:5555 "
                          "(port 0 picks a free port)")
    return host.strip("[]"), int(port_text)


def generate_curve_keys() -> CurveKeys:
    if not zmq.has("curve"):
        raise ConfigError("this libzmq was built without CURVE support; install a pyzmq wheel "
                          "(it bundles libzmq with CURVE) or use ipc:// on a single node")
    public, secret = zmq.curve_keypair()
    return CurveKeys(public=public.decode("ascii"), secret=secret.decode("ascii"))


def write_secret_key(keys: CurveKeys, run_dir: Path) -> Path:
    """Writes the secret key with mode 0600 (created so, never world-readable for an instant)."""
    path = run_dir / "curve_secret.key"
    # A resumed run directory may hold an older key file with a laxer mode, or a symlink planted
    # in its place: never follow links, and make the file private before the secret is written.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(keys.secret + "\n")
    (run_dir / "curve_public.key").write_text(keys.public + "\n", encoding="ascii")
    return path


def read_secret_key(path: Path) -> CurveKeys:
    """Loads a key pair written by write_secret_key (the public key is derived from the secret)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path} has mode {mode:o}; a CURVE secret key must be private "
                          "(chmod 600)")
    secret = path.read_text(encoding="ascii").strip()
    try:
        public = zmq.curve_public(secret.encode("ascii")).decode("ascii")
    except (zmq.ZMQError, ValueError) as e:
        raise ConfigError(f"{path}: not a Z85 CURVE secret key ({e})") from None
    return CurveKeys(public=public, secret=secret)
