"""Subprocess peers for interoperability tests against stock Pyro4 4.82 (and pyroplug in another process).

Every peer is a child process of the current Python interpreter, bounded in time and always cleaned up
(on Linux it also receives SIGTERM if the test process dies without cleaning up):

- :class:`Peer` starts a program, waits for its readiness line (with a timeout), keeps draining its
  output, and :meth:`Peer.stop` terminates it (then kills it). ``key=value`` announcements printed
  before the readiness line (``URI plain=PYRO:...``) are collected in :attr:`Peer.values`.
- :class:`Driver` is a long-lived *client* peer (``peers/driver.py``) that executes snippets of
  ordinary Pyro4 code with ``Pyro4`` bound to stock Pyro4 (flavor ``"pyro4"``) or to pyroplug (flavor
  ``"pyroplug"``) and sends back the snippet's ``result`` variable, or the exception it raised as a
  :class:`PeerError`.

The peer scripts themselves live in ``tests/interop/peers/``; :func:`peers_dir` finds them.
Environment: children inherit the environment minus every ``PYRO_*`` variable, plus what the caller
passes, so a developer's own Pyro settings never leak into a test.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import os
import pickle
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "Driver",
    "Peer",
    "PeerError",
    "PeerTimeout",
    "bounded_argv",
    "child_env",
    "free_tcp_port",
    "free_udp_port",
    "peer",
    "peers_dir",
    "repo_root",
    "run_peer",
    "short_socket_path",
]

#: how long a peer may take to print its readiness line
START_TIMEOUT = 30.0
#: how long a stopping peer gets between terminate() and kill()
STOP_GRACE = 3.0


class PeerTimeout(AssertionError):
    """A peer did not answer in time (it has been stopped; its output tail is in the message)."""


class PeerError(Exception):
    """An exception raised inside a driver peer, described by value (the peer's classes stay there).

    ``type`` is the qualified class name as the peer saw it (``Pyro4.errors.CommunicationError``,
    ``builtins.ValueError``), ``args`` the sanitized exception args, ``text`` its ``str()``,
    ``remote_traceback`` the joined ``_pyroTraceback`` when the exception came from a remote call,
    ``attributes`` the other instance attributes and ``traceback`` the peer-local traceback.
    """

    def __init__(self, description: Mapping[str, Any]) -> None:
        self.description = dict(description)
        self.type: str = description["__exception__"]
        self.args_: tuple[Any, ...] = tuple(description.get("args") or ())
        self.text: str = description.get("str", "")
        self.remote_traceback: str | None = description.get("remote_traceback")
        self.attributes: dict[str, Any] = dict(description.get("attributes") or {})
        self.traceback: str = description.get("traceback", "")
        super().__init__(f"{self.type}: {self.text}")

    def __str__(self) -> str:
        return f"{self.type}: {self.text}\n--- peer traceback ---\n{self.traceback}"


def repo_root() -> Path:
    """The checkout this module was loaded from (its ``tests/`` directory holds the peers)."""
    return Path(__file__).resolve().parents[2]


def peers_dir() -> Path:
    """``tests/interop/peers``: the peer scripts."""
    return repo_root() / "tests" / "interop" / "peers"


#: on Linux, peers are started through this one-liner: it asks the kernel to send SIGTERM to the peer
#: when the process that started it dies (even by SIGKILL), then execs the peer (same pid)
_DEATH_SIGNAL_WRAPPER = (
    "import ctypes, os, signal, sys; ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def bounded_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` made to die with the current process where the OS allows it (Linux: PR_SET_PDEATHSIG)."""
    argv = [str(a) for a in argv]
    if sys.platform.startswith("linux") and argv and os.path.isabs(argv[0]):
        return [sys.executable, "-c", _DEATH_SIGNAL_WRAPPER, *argv]
    return argv


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a peer: ours without ``PYRO_*`` variables, unbuffered, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYRO_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTHONSTARTUP", None)
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def short_socket_path(directory: str | os.PathLike[str], name: str) -> str:
    """A unix socket path that fits in ``sun_path`` (108 bytes): ``directory/name`` or a /tmp fallback."""
    path = os.path.join(os.fspath(directory), name)
    if len(path.encode()) < 100:
        return path
    import tempfile

    return os.path.join(tempfile.mkdtemp(prefix="pp-"), name)


class Peer:
    """A child process announcing readiness on stdout; its output is drained by reader threads.

    ``ready`` is the prefix of the readiness line. Lines of the form ``<KEY> <name>=<value>`` printed
    before it are stored as ``values[name] = value`` (KEY is ignored; the peers print ``URI``).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        ready: str | None = "READY",
        timeout: float = START_TIMEOUT,
        name: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        stdin: bool = False,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.name = name or Path(self.argv[1] if len(self.argv) > 1 else self.argv[0]).name
        self.values: dict[str, str] = {}
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: collections.deque[str] = collections.deque(maxlen=400)
        self.errors: collections.deque[str] = collections.deque(maxlen=400)
        self.proc = subprocess.Popen(
            bounded_argv(self.argv),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(env),
            cwd=os.fspath(cwd) if cwd is not None else None,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines, self.output), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, None, self.errors), daemon=True),
        ]
        for t in self._threads:
            t.start()
        if ready is not None:
            try:
                self.wait_for(ready, timeout, collect=True)
            except BaseException:
                self.stop()
                raise

    @staticmethod
    def _pump(stream: Any, lines: queue.Queue[str | None] | None, tail: collections.deque[str]) -> None:
        try:
            for line in stream:
                line = line.rstrip("\r\n")
                tail.append(line)
                if lines is not None:
                    lines.put(line)
        except (OSError, ValueError):
            pass
        finally:
            if lines is not None:
                lines.put(None)

    def wait_for(self, prefix: str, timeout: float, collect: bool = False) -> str:
        """Read stdout lines until one starts with ``prefix``; return it. PeerTimeout after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PeerTimeout(f"{self.name}: no {prefix!r} line within {timeout}s\n{self.describe()}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.lines.put(None)  # keep the end marker for later readers
                raise PeerTimeout(f"{self.name}: exited (rc={self.proc.poll()}) before {prefix!r}\n{self.describe()}")
            if line.startswith(prefix):
                return line
            if collect:
                key, _, rest = line.partition(" ")
                name, eq, value = rest.partition("=")
                if eq and key.isupper() and name and " " not in name:
                    self.values[name] = value

    def describe(self) -> str:
        """The command line and the tails of stdout and stderr, for failure messages."""
        out = "\n".join(list(self.output)[-40:])
        err = "\n".join(list(self.errors)[-60:])
        return f"$ {' '.join(self.argv)}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int | None:
        """Close stdin, terminate, wait STOP_GRACE seconds, then kill. Returns the exit code."""
        proc = self.proc
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_GRACE)
        for t in self._threads:
            t.join(STOP_GRACE)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return proc.returncode

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Peer {self.name} pid={self.proc.pid} {'running' if self.alive else 'exited'}>"


def run_peer(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 30.0,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a short-lived peer program to completion (killed after ``timeout``); its CompletedProcess."""
    return subprocess.run(
        bounded_argv(argv), env=child_env(env), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL, cwd=os.fspath(cwd) if cwd is not None else None, check=False,
    )


class Driver:
    """A client peer executing Pyro4-style code snippets (``peers/driver.py``), restarted if it dies.

    ``run(code, **variables)`` executes ``code`` in a fresh namespace holding ``Pyro4`` (stock Pyro4 or
    pyroplug, by flavor), the modules ``datetime decimal math uuid time threading``, the helpers
    ``proxy(uri, serializer=None, **attrs)``, ``catch(fn, *args, **kwargs)`` (the exception fn raised,
    described as a dict, or an AssertionError if it raised none) and ``describe(exc)`` (that description
    of an exception), the persistent dict ``state`` and
    the given variables (pickled; plain Python values only). It returns the namespace's ``result``
    (sanitized: foreign objects become ``{"__peer_object__": type, "str": ..., "repr": ...}``, exceptions
    become descriptions) or raises :class:`PeerError`. The config is reset from the environment and the
    call context cleared before every snippet.
    """

    def __init__(self, flavor: str = "pyro4", env: Mapping[str, str] | None = None, timeout: float = 20.0) -> None:
        self.flavor = flavor
        self.env = dict(env or {})
        self.timeout = timeout
        self.peer: Peer | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> Peer:
        if self.peer is None or not self.peer.alive:
            if self.peer is not None:
                self.peer.stop()
            self.peer = Peer(
                [sys.executable, str(peers_dir() / "driver.py"), "--flavor", self.flavor],
                env=self.env, stdin=True, name=f"driver[{self.flavor}]",
            )
        return self.peer

    def run(self, code: str, timeout: float | None = None, **variables: Any) -> Any:
        """Execute ``code`` in the peer and return its ``result`` (or raise PeerError / PeerTimeout)."""
        with self._lock:
            peer = self._ensure()
            request = {"code": code, "vars": base64.b64encode(pickle.dumps(variables)).decode("ascii")}
            assert peer.proc.stdin is not None
            try:
                peer.proc.stdin.write(json.dumps(request) + "\n")
                peer.proc.stdin.flush()
                line = peer.wait_for("RESULT ", timeout or self.timeout)
            except (OSError, PeerTimeout) as exc:
                text = peer.describe()
                peer.stop()
                self.peer = None
                raise PeerTimeout(f"driver[{self.flavor}] did not answer: {exc}\n{text}") from None
        reply = pickle.loads(base64.b64decode(line[len("RESULT "):]))  # noqa: S301 - our own child process
        if reply["ok"]:
            return reply["value"]
        raise PeerError(reply["error"])

    def close(self) -> None:
        """Stop the peer process."""
        if self.peer is not None:
            self.peer.stop()
            self.peer = None

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def peer(argv: Sequence[str], **kwargs: Any) -> Iterator[Peer]:
    """Context manager form of :class:`Peer` (always stopped on exit)."""
    p = Peer(argv, **kwargs)
    try:
        yield p
    finally:
        p.stop()
