"""Run the mixed fleet with one command: ``python examples/mixed_fleet/run.py [--ns pyroplug|pyro4]``.

Starts, as subprocesses on 127.0.0.1: one name server (pyroplug's by default, or stock Pyro4's), the
inventory service on stock Pyro4 4.82, the pricing service on pyroplug, then the same client code with
stock Pyro4 and with pyroplug. Prints what each process said, and always stops everything it started.
Exit code 0 when every client succeeded.
"""

from __future__ import annotations

import argparse
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(argv: list[str], env: dict[str, str], expect: str) -> tuple[subprocess.Popen[str], str]:
    """Start a process and wait (at most TIMEOUT seconds) for its stdout line starting with ``expect``.

    A thread keeps echoing the process's output (indented), so its pipe never fills up.
    """
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)
    name = argv[2] if argv[1] == "-m" else Path(argv[1]).name
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(f"    {name}: {line.rstrip()}", flush=True)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + TIMEOUT
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        if line is None:
            break
        if line.startswith(expect):
            return proc, line[len(expect):].strip()
    stop(proc)
    raise RuntimeError(f"{name} did not print {expect!r} within {TIMEOUT}s")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ns", choices=("pyroplug", "pyro4"), default="pyroplug", help="which name server to run")
    options = parser.parse_args()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYRO_")}
    env.update(PYTHONUNBUFFERED="1", PYRO_NS_HOST="127.0.0.1", PYRO_NS_PORT=str(port),
               PYRO_BROADCAST_ADDRS="127.0.0.1")  # loopback only, even if the direct lookup failed
    python = sys.executable
    ns_module = "pyroplug.naming" if options.ns == "pyroplug" else "Pyro4.naming"
    started: list[subprocess.Popen[str]] = []
    try:
        print(f"1. name server ({options.ns}): python -m {ns_module}")
        proc, ns_uri = start([python, "-m", ns_module, "-n", "127.0.0.1", "-p", str(port), "-x"], env, "URI = ")
        started.append(proc)
        print("2. inventory service (stock Pyro4 4.82)")
        proc, _ = start([python, str(HERE / "inventory_pyro4.py")], env, "READY ")
        started.append(proc)
        print("3. pricing service (pyroplug)")
        proc, _ = start([python, str(HERE / "pricing_pyroplug.py")], env, "READY ")
        started.append(proc)
        failures = 0
        for flavor in ("pyro4", "pyroplug"):
            print(f"4. client ({flavor})")
            done = subprocess.run([python, str(HERE / "client.py"), "--flavor", flavor], env=env, capture_output=True,
                                  text=True, timeout=TIMEOUT, check=False)
            for line in (done.stdout + done.stderr).splitlines():
                print(f"    {line}")
            failures += done.returncode != 0
        print(f"done: {'all clients succeeded' if not failures else f'{failures} client(s) failed'} (name server {ns_uri})")
        return 1 if failures else 0
    finally:
        for proc in reversed(started):
            stop(proc)


if __name__ == "__main__":
    sys.exit(main())
