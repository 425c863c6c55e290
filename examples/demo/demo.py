"""`make demo`: a real name server, four daemons (thread/multiplex x TCP/unix) and a client, with a report.

Everything runs in separate processes on 127.0.0.1 and unix sockets, and is cleaned up at the end.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from typing import Any

import pyroplug as Pyro4
from pyroplug.core.tracebacks import getPyroTraceback

HERE = os.path.dirname(os.path.abspath(__file__))
SERIALIZERS = ["serpent", "json", "marshal", "msgpack", "pickle", "dill"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], ready: str, stack: ExitStack, timeout: float = 20.0) -> subprocess.Popen[str]:
    """Start a child process and wait for the line that says it is ready."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stack.callback(stop, proc)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{cmd[1:3]} exited early with code {proc.wait()}")
        if ready in line:
            return proc
    raise RuntimeError(f"{cmd} did not become ready in {timeout} s")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 70 - len(title)))


def show(label: str, value: Any) -> None:
    print(f"  {label:<46} {value}")


def main() -> int:
    Pyro4.config.NS_HOST = "127.0.0.1"
    Pyro4.config.NS_PORT = free_port()
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        section("Starting processes")
        start([sys.executable, "-m", "pyroplug.naming", "-n", "127.0.0.1", "-p", str(Pyro4.config.NS_PORT), "-x"],
              "NS running", stack)
        show("name server", f"PYRO:Pyro.NameServer@127.0.0.1:{Pyro4.config.NS_PORT}")
        servers = []
        for servertype in ("thread", "multiplex"):
            for transport in ("tcp", "unix"):
                cmd = [sys.executable, os.path.join(HERE, "server.py"), "--servertype", servertype,
                       "--ns-port", str(Pyro4.config.NS_PORT)]
                if transport == "unix":
                    cmd += ["--unixsocket", os.path.join(tmp, f"{servertype}.sock")]
                start(cmd, "ready", stack)
                servers.append((servertype, transport))
                show(f"daemon ({servertype} server, {transport})", "ready")
        with Pyro4.locateNS(broadcast=False) as ns:
            names = ns.list(prefix="demo.")
        show("names registered in the name server", len(names))

        section("Every serializer x server type x transport (PYRONAME lookups)")
        print(f"  {'server':<10} {'transport':<9} " + " ".join(f"{s:>8}" for s in SERIALIZERS))
        for servertype, transport in servers:
            cells = []
            for ser in SERIALIZERS:
                with Pyro4.Proxy(f"PYRONAME:demo.{servertype}.{transport}.calculator") as calc:
                    calc._pyroSerializer = ser
                    start_t = time.perf_counter()
                    n = 200
                    ok = all(calc.add(i, 1) == i + 1 for i in range(n))
                    rate = n / (time.perf_counter() - start_t)
                    ok = ok and calc.echo({"ser": ser, "list": [1, 2.5, "three"]}) == {"ser": ser, "list": [1, 2.5, "three"]}
                    cells.append(f"{rate:6.0f}/s" if ok else "   FAIL ")
            print(f"  {servertype:<10} {transport:<9} " + " ".join(f"{c:>8}" for c in cells))
        print("  (calls per second for 200 sequential add() calls, each cell a fresh connection)")

        section("Oneway calls")
        with Pyro4.Proxy("PYRONAME:demo.thread.tcp.calculator") as calc:
            before = calc.seen()
            t0 = time.perf_counter()
            calc.remember_slowly(7)
            show("remember_slowly(7) (sleeps 0.5 s remotely) took", f"{(time.perf_counter() - t0) * 1000:.1f} ms")
            while calc.seen() == before:
                time.sleep(0.05)
            show("after it finished, the memory property reads", calc.memory)
            calc.memory = 99
            show("after setting the property to 99 it reads", calc.memory)

        section("Instance modes")
        for mode in ("single", "session", "percall"):
            counts = []
            for _ in range(2):
                with Pyro4.Proxy(f"PYRONAME:demo.multiplex.unix.{mode}") as counter:
                    counts.append([counter.increment(), counter.increment()])
            show(f"{mode}: two proxies, two calls each", counts)

        section("Autoproxy, streaming, batch")
        with Pyro4.Proxy("PYRONAME:demo.thread.unix.calculator") as calc:
            account = calc.new_account("ada")
            show("new_account('ada') returned", type(account).__name__ + " " + str(account._pyroUri))
            with account:
                show("account.deposit(10)", account.deposit(10))
            show("list(countdown(5)) streamed item by item", list(calc.countdown(5)))
            batch = Pyro4.batch(calc)
            batch.add(1, 2)
            batch.divide(1, 0)
            batch.add(3, 4)
            results = batch()
            show("batch: first result", next(results))
            try:
                next(results)
            except ZeroDivisionError as exc:
                show("batch: second call raised", repr(exc))

        section("An exception with its remote traceback")
        with Pyro4.Proxy("PYRONAME:demo.multiplex.tcp.calculator") as calc:
            try:
                calc.divide(1, 0)
            except ZeroDivisionError:
                lines = "".join(getPyroTraceback()).splitlines()
                remote_at = next(i for i, line in enumerate(lines) if "Remote traceback" in line)
                for line in lines[remote_at:]:
                    print("  " + line)

        section("Safe by default")
        with Pyro4.Daemon(host="127.0.0.1") as default_daemon:
            uri = default_daemon.register(Pyro4.DaemonObject(default_daemon), "probe")
            import threading

            t = threading.Thread(target=default_daemon.requestLoop, daemon=True)
            t.start()
            with Pyro4.Proxy(uri) as probe:
                probe._pyroSerializer = "pickle"
                try:
                    probe.ping()
                except Pyro4.errors.CommunicationError as exc:
                    show("a default daemon refuses pickle:", "")
                    print("    " + str(exc))
            default_daemon.shutdown()
            t.join(5)
        section("Done: all processes stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
