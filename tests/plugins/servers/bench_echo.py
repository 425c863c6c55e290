"""Single-client echo round trips over TCP: bare socket ping-pong vs the thread and multiplex server types.

Not a test (pytest does not collect it). Run from the repository root::

    .venv/bin/python -m tests.plugins.servers.bench_echo [--calls 20000] [--idle 1000]

The server runs in this process; the client (and the holder of the idle connections) run in
separate processes, so the numbers are not distorted by sharing one GIL with the client.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import socket
import threading
import time
from typing import Any

from pyroplug.core import protocol
from pyroplug.core.config import Config
from pyroplug.core.uri import URI

PAYLOAD = b"x" * 40  # about the size of a small serialized call


def client_main(location: str, calls: int, rounds: int, out: Any) -> None:
    from pyroplug.plugins.transports.tcp import TCPTransport

    conn = TCPTransport(Config()).connect(URI("PYRO:bench@" + location))
    head, payload = protocol.encode_parts(protocol.MSG_INVOKE, PAYLOAD, 1)
    message = head + payload
    for _ in range(200):  # warm up (and let the server park nothing)
        conn.send(message)
        conn.recv_message()
    best = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            conn.send(message)
            conn.recv_message()
        best = max(best, calls / (time.perf_counter() - started))
    conn.close()
    out.put(best)


def idle_main(location: str, count: int, ready: Any, done: Any) -> None:
    """Open ``count`` connections, make one call on each, then keep them idle until told to stop."""
    from pyroplug.plugins.transports.tcp import TCPTransport

    transport = TCPTransport(Config())
    uri = URI("PYRO:bench@" + location)
    conns = [transport.connect(uri) for _ in range(count)]
    message = protocol.encode(protocol.MSG_INVOKE, PAYLOAD, 1)
    for conn in conns:
        conn.send(message)
    for conn in conns:
        conn.recv_message()
    ready.set()
    done.wait(600)
    for conn in conns:
        conn.close()


class EchoHandler:
    def connection_opened(self, conn: Any) -> None:
        pass

    def connection_closed(self, conn: Any) -> None:
        pass

    def run_housekeeping(self) -> None:
        pass

    def handle_message(self, conn: Any, msg: protocol.Message) -> None:
        conn.send_parts(*protocol.encode_parts(protocol.MSG_RESULT, msg.data, msg.serializer_id, seq=msg.seq))


def bare_server() -> tuple[str, Any]:
    """A thread per connection doing recv/sendall: the floor for Python socket round trips."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)

    def serve(sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        recv, sendall = sock.recv, sock.sendall
        while True:
            data = recv(65536)
            if not data:
                break
            sendall(data)
        sock.close()

    def accept_loop() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(sock,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    return f"127.0.0.1:{listener.getsockname()[1]}", listener.close


def framed_server() -> tuple[str, Any]:
    """A thread per connection doing recv_message/send_parts on a Connection: bare socket + the framing."""
    from pyroplug.plugins.transports.tcp import TCPTransport

    listener = TCPTransport(Config()).listen("127.0.0.1", 0)
    listener.sock.setblocking(True)
    handler = EchoHandler()

    def serve(conn: Any) -> None:
        try:
            while True:
                handler.handle_message(conn, conn.recv_message())
        except Exception:
            conn.close()

    def accept_loop() -> None:
        while True:
            try:
                csock, _ = listener.sock.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(listener.wrap(csock),), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    return listener.location, listener.close


def pyroplug_server(kind: str) -> tuple[str, Any]:
    from pyroplug.plugins.servers.multiplex import MultiplexServer
    from pyroplug.plugins.servers.thread import ThreadServer
    from pyroplug.plugins.transports.tcp import TCPTransport

    cfg = Config()
    listener = TCPTransport(cfg).listen("127.0.0.1", 0)
    server = (ThreadServer if kind == "thread" else MultiplexServer)(cfg)
    server.init(EchoHandler(), listener)
    loop = threading.Thread(target=server.loop, daemon=True)
    loop.start()

    def stop() -> None:
        server.shutdown()
        loop.join(5)
        server.close()

    return listener.location, stop


def measure(ctx: Any, location: str, calls: int, rounds: int) -> tuple[float, float]:
    """(best calls/s of the client, server-process CPU microseconds per call)."""
    out = ctx.Queue()
    proc = ctx.Process(target=client_main, args=(location, calls, rounds, out))
    before = resource.getrusage(resource.RUSAGE_SELF)
    proc.start()
    rate = float(out.get(timeout=300))
    after = resource.getrusage(resource.RUSAGE_SELF)
    proc.join()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rate, cpu / (calls * rounds + 200) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=int, default=1000)
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    results: dict[str, tuple[float, float]] = {}

    location, stop = bare_server()
    results["bare socket ping-pong"] = measure(ctx, location, args.calls, args.rounds)
    stop()
    location, stop = framed_server()
    results["bare framed echo (recv_message/send_parts)"] = measure(ctx, location, args.calls, args.rounds)
    stop()
    for kind in ("thread", "multiplex"):
        location, stop = pyroplug_server(kind)
        results[f"{kind} server"] = measure(ctx, location, args.calls, args.rounds)
        if args.idle:
            ready, done = ctx.Event(), ctx.Event()
            holder = ctx.Process(target=idle_main, args=(location, args.idle, ready, done))
            holder.start()
            if not ready.wait(120):
                raise SystemExit("idle connections did not come up")
            time.sleep(0.5)  # let the linger run out: all of them parked
            results[f"{kind} server + {args.idle} idle connections"] = measure(ctx, location, args.calls, args.rounds)
            done.set()
            holder.join(60)
        stop()
    bare = results["bare socket ping-pong"][0]
    framed = results["bare framed echo (recv_message/send_parts)"][0]
    print(f"single client, {args.calls} synchronous echo round trips over TCP (best of {args.rounds}):")
    for name, (rate, cpu) in results.items():
        print(
            f"  {name:<44} {rate:>9,.0f} calls/s  {rate / bare:>4.0%} of bare  {rate / framed:>4.0%} of framed"
            f"  server CPU {cpu:5.1f} us/call"
        )


if __name__ == "__main__":
    main()
