"""Load and faults: concurrent client processes lose no registration; SQLite survives SIGKILL; junk never stops us."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pyroplug import errors
from pyroplug.core.config import config
from pyroplug.core.proxy import Proxy
from pyroplug.core.uri import URI
from pyroplug.naming import BroadcastServer
from tests.naming.conftest import PYTHON, test_env

CLIENT = str(Path(__file__).with_name("load_client.py"))
ROOT = str(Path(__file__).parents[2])


class NSProcess:
    """``python -m pyroplug.naming`` in a subprocess, on 127.0.0.1 with a random port."""

    def __init__(self, storage: str = "memory") -> None:
        self.proc = subprocess.Popen([PYTHON, "-m", "pyroplug.naming", "-n", "127.0.0.1", "-p", "0", "-x", "-s", storage],
                                     env=test_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        self.uri: URI | None = None
        for line in self.proc.stdout:
            if line.startswith("URI = "):
                self.uri = URI(line.split(" = ", 1)[1].strip())
                break
            if time.monotonic() > deadline:
                break
        assert self.uri is not None, "name server did not start"
        # keep draining stdout so the server never blocks on a full pipe
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(20)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def storage_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory" if request.param == "memory" else f"sql:{tmp_path / 'names.sqlite'}"


def run_clients(uri: URI, clients: int, names: int) -> list[str]:
    env = test_env(PYTHONPATH=ROOT)
    start_at = time.time() + 1.5  # all clients connected first, then registering at the same moment
    procs = [subprocess.Popen([PYTHON, CLIENT, str(uri), str(c), str(names), str(start_at)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for c in range(clients)]
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        outputs.append(out.strip())
    return outputs


def check_everything_registered(uri: URI, clients: int, names: int) -> None:
    with Proxy(uri) as ns:
        assert ns.count() == clients * names + 1
        listed = ns.list(prefix="load.")
        assert len(listed) == clients * names
        for c in range(clients):
            for i in range(names):
                assert listed[f"load.c{c}.n{i}"] == f"PYRO:o{c}x{i}@127.0.0.1:{1000 + i}"
        tagged = ns.list(metadata_all=["load", "client3"])
        assert sorted(tagged) == sorted(f"load.c3.n{i}" for i in range(0, names, 10))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("storage_spec", ["memory", "sql"], indirect=True)
def test_twenty_client_processes_lose_nothing(storage_spec: str) -> None:
    """20 processes register and look up 200 names each, all at the same time."""
    ns = NSProcess(storage_spec)
    try:
        assert ns.uri is not None
        outputs = run_clients(ns.uri, 20, 200)
        assert outputs == ["OK 200 200"] * 20
        check_everything_registered(ns.uri, 20, 200)
    finally:
        ns.stop()


@pytest.mark.soak
@pytest.mark.timeout(900)
@pytest.mark.parametrize("storage_spec", ["memory", "sql"], indirect=True)
def test_soak_many_client_processes(storage_spec: str) -> None:
    ns = NSProcess(storage_spec)
    try:
        assert ns.uri is not None
        assert run_clients(ns.uri, 50, 1000) == ["OK 1000 1000"] * 50
        check_everything_registered(ns.uri, 50, 1000)
    finally:
        ns.stop()


@pytest.mark.timeout(120)
def test_sql_store_survives_sigkill(tmp_path: Path) -> None:
    """Writers race a SIGKILL of the name server; every acknowledged registration is there after a restart."""
    spec = f"sql:{tmp_path / 'names.sqlite'}"
    acked: dict[str, str] = {}
    lock = threading.Lock()
    for cycle in range(2):
        ns = NSProcess(spec)
        assert ns.uri is not None
        stop = threading.Event()

        def writer(w: int, uri: URI = ns.uri, cycle: int = cycle, stop: threading.Event = stop) -> None:
            with Proxy(uri) as proxy:
                i = 0
                while not stop.is_set():
                    name, target = f"kill.{cycle}.{w}.{i}", f"PYRO:k{w}x{i}@127.0.0.1:{2000 + i}"
                    try:
                        proxy.register(name, target, metadata={f"w{w}"})
                    except errors.CommunicationError:
                        return  # the server is gone; this one was never acknowledged
                    with lock:
                        acked[name] = target
                    i += 1

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while len(acked) < 300 * (cycle + 1) and time.monotonic() < deadline:
            time.sleep(0.01)
        ns.kill()  # SIGKILL: no chance to flush or close anything
        stop.set()
        for t in threads:
            t.join(20)
        assert len(acked) >= 300 * (cycle + 1)
    restarted = NSProcess(spec)
    try:
        assert restarted.uri is not None
        with Proxy(restarted.uri) as ns:
            listed = ns.list(prefix="kill.", return_metadata=True)
            missing = sorted(set(acked) - set(listed))
            assert not missing, f"{len(missing)} acknowledged registrations lost, e.g. {missing[:5]}"
            for name, target in acked.items():
                w = name.split(".")[2]
                assert tuple(listed[name]) == (target, [f"w{w}"])
    finally:
        restarted.stop()


def test_responder_survives_a_flood_of_junk() -> None:
    rng = random.Random(1234)
    uri = "PYRO:Pyro.NameServer@127.0.0.1:9999"
    with BroadcastServer(uri, bchost="127.0.0.1", bcport=0) as bc:
        bc.runInThread()
        port = bc.getPort()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            for round_ in range(5):
                for _ in range(200):
                    junk = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 9, 50, 100, 101, 1400])))
                    s.sendto(junk, ("127.0.0.1", port))
                time.sleep(0.05)
                while True:  # drain any replies to junk that happened to be GET_NSURI (there are none)
                    s.settimeout(0.01)
                    try:
                        s.recvfrom(200)
                    except TimeoutError:
                        break
                s.settimeout(3)
                s.sendto(b"GET_NSURI", ("127.0.0.1", port))
                assert s.recvfrom(200)[0] == uri.encode(), f"round {round_}"


def test_name_server_survives_malformed_requests(ns_server: object) -> None:
    uri: URI = ns_server.uri  # type: ignore[attr-defined]
    junk_messages = [
        b"",
        b"PYRO",
        b"GARBAGE" * 100,
        b"PYRO\x00\x30\x00\x01" + b"\x00" * 16,  # a header with a bad checksum
        b"PYRO\x00\x30\x00\x01\x00\x00\x00\x00\x7f\xff\xff\xff" + b"\x00" * 8,  # claims a huge body
        os.urandom(4096),
    ]
    for junk in junk_messages:
        with socket.create_connection((uri.host, uri.port), timeout=5) as s:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            try:
                s.recv(100)
            except OSError:
                pass
    with Proxy(uri) as ns:
        with pytest.raises(AttributeError):
            ns.no_such_method()
        with pytest.raises(TypeError):
            ns.lookup()  # wrong number of arguments: a remote TypeError
        with pytest.raises(TypeError):
            ns.register(["a", "list"], "PYRO:x@h:1")
        assert ns.ping() is None and ns.count() == 1
    assert config.NS_HOST == "127.0.0.1"
