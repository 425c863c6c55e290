"""End-to-end calls over real sockets, pyroplug vs stock Pyro4 4.82, one client connection at a time.

* **small calls** ``add(i, 1)``: every serializer x server type (thread, multiplex) x transport
  (tcp, unix); calls per second of one synchronous client.
* **10 MiB echo**: ``echo(bytes)`` round trips of a 10 MiB ``bytes`` for marshal, pickle and msgpack
  (thread server, tcp); payload MiB per second.
* **connect + first call + release**: a fresh proxy each time (handshake with metadata, one call,
  close); connections per second.

Each implementation serves from its own subprocess (:mod:`benchmarks.server`) with the same config;
the clients run here. Rounds alternate pyroplug / Pyro4 and the medians are compared. For the
latency-bound cases (small calls, connect cycles) client and servers are pinned to one CPU (see
:func:`benchmarks.harness.pinned`), both implementations alike; the 10 MiB echo is a throughput case
and runs unpinned, so that sender and receiver may copy in parallel, as they would.
"""

from __future__ import annotations

import os
from typing import Any

from benchmarks import Result
from benchmarks.harness import (
    impl_module,
    interleaved,
    make_proxy,
    pinned,
    rate_for,
    replicas,
    rotating,
    save_results,
    servers,
)

NAME = "calls"
SERIALIZERS = ("marshal", "pickle", "msgpack", "json", "serpent")
SERVER_TYPES = ("thread", "multiplex")
TRANSPORTS = ("tcp", "unix")
#: required pyroplug/Pyro4 ratio of small calls, per serializer
SMALL_TARGETS = {"marshal": 2.0, "pickle": 2.0, "msgpack": 2.0, "json": 2.0, "serpent": 1.5}
BIG_SERIALIZERS = ("marshal", "pickle", "msgpack")
BIG_SIZE = 10 * 1024 * 1024
BIG_TARGET = 3.0
CONNECT_TARGET = 2.0
CONNECT_SERIALIZER = "marshal"


def _settings(quick: bool) -> tuple[int, float]:
    """(rounds, seconds per round): whole turns over the server replicas (see harness.replicas)."""
    return (3, 0.15) if quick else (6, 0.25)


def small_calls(quick: bool = False) -> list[Result]:
    """``add(i, 1)`` for every serializer, server type and transport."""
    rounds, seconds = _settings(quick)
    results = []
    for servertype in SERVER_TYPES:
        for transport in TRANSPORTS:
            with pinned(), replicas(servertype=servertype, transport=transport) as pairs:
                for serializer in SERIALIZERS:
                    proxies = [{impl: make_proxy(impl, srv[impl].uri, serializer) for impl in srv} for srv in pairs]
                    try:
                        for pair in proxies:
                            for proxy in pair.values():
                                assert proxy.add(41, 1) == 42
                        pick = rotating(proxies)
                        rates = interleaved(rounds, lambda impl, pick=pick: _small_round(pick(impl), seconds))
                    finally:
                        for pair in proxies:
                            for proxy in pair.values():
                                proxy._pyroRelease()
                    case = f"small call {serializer} {servertype}/{transport}"
                    results.append(Result(NAME, case, rates["pyroplug"], rates["pyro4"], SMALL_TARGETS[serializer],
                                          "calls/s"))
                    print(f"   {case}: {rates['pyroplug']:,.0f} vs {rates['pyro4']:,.0f}", flush=True)
    return results


def _small_round(proxy: Any, seconds: float) -> float:
    add = proxy.add
    return rate_for(lambda: add(7, 1), seconds)


def big_echo(quick: bool = False) -> list[Result]:
    """Round trips of a 10 MiB bytes object (thread server, tcp)."""
    rounds, seconds = (3, 0.5) if quick else (5, 1.0)
    payload = os.urandom(BIG_SIZE)
    mib = BIG_SIZE / (1024 * 1024)
    results = []
    with servers(servertype="thread", transport="tcp") as srv:  # a throughput case: not pinned
        for serializer in BIG_SERIALIZERS:
            proxies = {impl: make_proxy(impl, srv[impl].uri, serializer) for impl in srv}
            try:
                for proxy in proxies.values():
                    assert proxy.echo(payload) == payload
                rates = interleaved(
                    rounds, lambda impl, p=proxies: mib * rate_for(lambda: p[impl].echo(payload), seconds, chunk=1)
                )
            finally:
                for proxy in proxies.values():
                    proxy._pyroRelease()
            case = f"10 MiB bytes echo {serializer} thread/tcp"
            results.append(Result(NAME, case, rates["pyroplug"], rates["pyro4"], BIG_TARGET, "MiB/s"))
            print(f"   {case}: {rates['pyroplug']:,.1f} vs {rates['pyro4']:,.1f} MiB/s", flush=True)
    return results


def connect_call_release(quick: bool = False) -> list[Result]:
    """A fresh proxy per iteration: connect (handshake + metadata), one call, release."""
    rounds, seconds = (3, 0.3) if quick else (6, 0.4)
    results = []
    for servertype in SERVER_TYPES:
        with pinned(), replicas(servertype=servertype, transport="tcp") as pairs:
            pick = rotating([{impl: srv[impl].uri for impl in srv} for srv in pairs])

            def one(impl: str, pick: Any = pick) -> float:
                module, uri = impl_module(impl), pick(impl)

                def cycle() -> None:
                    proxy = module.Proxy(uri)
                    proxy._pyroSerializer = CONNECT_SERIALIZER
                    proxy.add(1, 2)
                    proxy._pyroRelease()

                return rate_for(cycle, seconds, chunk=5)

            for _pair in pairs:
                for impl in pairs[0]:
                    one(impl)  # warm up every server's pool
            rates = interleaved(rounds, one)
            case = f"connect+call+release {CONNECT_SERIALIZER} {servertype}/tcp"
            results.append(Result(NAME, case, rates["pyroplug"], rates["pyro4"], CONNECT_TARGET, "conn/s"))
            print(f"   {case}: {rates['pyroplug']:,.0f} vs {rates['pyro4']:,.0f}", flush=True)
    return results


def run(quick: bool = False) -> list[Result]:
    """Small calls, 10 MiB echoes and connect cycles; results also go to benchmarks/results/latest.json."""
    results = small_calls(quick) + big_echo(quick) + connect_call_release(quick)
    save_results(NAME, results, {"quick": quick})
    return results


if __name__ == "__main__":
    from benchmarks.__main__ import format_table

    print(format_table(run()))
