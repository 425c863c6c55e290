"""Runs every example of the server chapter (examples/servers/) as the user would: as subprocesses.

Servers start in the background and print their URI; clients get that URI as their argument. The
output of both is asserted. A name server (``python -m pyroplug.naming``) is started once for the
examples that need one; its address reaches the scripts through PYRO_NS_HOST / PYRO_NS_PORT.
Everything binds to 127.0.0.1 (PYRO_HOST for the scripts that use the default host) and every
process is stopped at the end of its test.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(90)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "servers"
URI = re.compile(r"PYRO:[^\s,]+")
URI_LOCATION = re.compile(r"@(\S+)$")


class Process:
    """A running example script whose output lines are collected by a reader thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            cwd=EXAMPLES,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 20.0) -> list[re.Match[str]]:
        """The first ``count`` matches of ``pattern`` in the output, waiting for them to appear."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [m for line in self.lines if (m := regex.search(line))]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"{self.args[0]}: no {count} x {pattern!r} in its output (exit code {self.popen.poll()}):\n"
                        + "\n".join(self.lines)
                    )
                self._changed.wait(min(left, 0.1))

    def uris(self, count: int = 1) -> list[str]:
        return [m.group(0) for m in self.wait_for(URI.pattern, count)]

    def wait_exit(self, timeout: float = 15.0) -> int:
        """Wait for the script to end by itself; its exit code."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.args[0]} did not end by itself:\n{self.output}") from None
        self._reader.join(5)
        return code

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._reader.join(5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYRO_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYRO_HOST"] = "127.0.0.1"  # scripts that use the default host stay on loopback
    return env


@pytest.fixture(scope="module")
def nameserver() -> Iterator[dict[str, str]]:
    """A name server on 127.0.0.1 (random port, no broadcast server); yields the env that finds it."""
    ns = Process(["-m", "pyroplug.naming", "-n", "127.0.0.1", "-p", "0", "-x"], _base_env())
    try:
        port = ns.wait_for(r"NS running on 127\.0\.0\.1:(\d+)")[0].group(1)
        ns.wait_for(r"URI = PYRO:Pyro\.NameServer@")
        yield {"PYRO_NS_HOST": "127.0.0.1", "PYRO_NS_PORT": port}
    finally:
        ns.stop()


@pytest.fixture
def spawn() -> Iterator[Callable[..., Process]]:
    """Start example scripts in the background; all are stopped after the test."""
    started: list[Process] = []

    def start(script: str, *args: str, **env: str) -> Process:
        proc = Process([str(EXAMPLES / script), *args], {**_base_env(), **env})
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def run(script: str, *args: str, timeout: float = 30.0, **env: str) -> str:
    """Run a client script to its end; its output (AssertionError with the output if it failed)."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=timeout,
        env={**_base_env(), **env}, cwd=EXAMPLES,
    )
    assert done.returncode == 0, f"{script} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_every_script_is_covered() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    tested = set(re.findall(r'"(\w+\.py)"', Path(__file__).read_text()))
    assert scripts <= tested, f"example scripts without a test: {sorted(scripts - tested)}"
    readme = (EXAMPLES.parent / "README.md").read_text()
    assert all(name in readme for name in scripts), "every script is listed in examples/README.md"


# --- decorators ---------------------------------------------------------------------------------
def test_partially_exposed_service(spawn: Callable[..., Process]) -> None:
    (uri,) = spawn("expose_server.py").uris()
    out = run("expose_client.py", uri)
    assert "exposed methods: ['get_value']" in out
    assert "exposed attributes: ['attr']" in out
    assert "get_value() = 42" in out and "attr = 42" in out
    assert "after 'service.attr = 99': get_value() = 99" in out
    for name in ("value", "_private", "__private", "__dunder__"):
        assert f"{name} refused by the proxy" in out
    assert "value refused by the daemon: attempt to access unexposed attribute 'value'" in out
    assert "_private refused by the daemon: attempt to access private attribute '_private'" in out
    assert "__private refused by the daemon: attempt to access private attribute '__private'" in out
    assert "__dunder__ refused by the daemon: attempt to access unexposed attribute '__dunder__'" in out
    assert "is reachable" not in out and "is callable" not in out


def test_oneway(spawn: Callable[..., Process]) -> None:
    server = spawn("oneway_server.py")
    (uri,) = server.uris()
    out = run("oneway_client.py", uri)
    assert "oneway methods: ['oneway_method']" in out
    oneway = re.search(r"oneway_method\(100\) returned None after ([\d.]+) s", out)
    normal = re.search(r"normal_method\(21\) returned 42 after ([\d.]+) s", out)
    assert oneway and normal, out
    assert float(oneway.group(1)) < 0.4  # did not wait for the 0.5 s calculation
    assert float(normal.group(1)) >= 0.45
    server.wait_for(r"^calculated 200$")  # the oneway call did run, in the server
    server.wait_for(r"^calculated 42$")


# --- publishing -----------------------------------------------------------------------------------
def test_publish_register_and_request_loop(spawn: Callable[..., Process]) -> None:
    (uri,) = spawn("publish_server.py").uris()
    assert "@127.0.0.1:" in uri  # Pyro4.Daemon() binds HOST, here PYRO_HOST=127.0.0.1
    assert run("thing_client.py", uri).splitlines() == ["hello client, from MyPyroThing"]


def test_instance_modes(spawn: Callable[..., Process]) -> None:
    uris = spawn("instancemode_server.py").uris(4)
    out = run("instancemode_client.py", *uris).splitlines()
    assert out == [
        "example.percall: first proxy [1, 1], second proxy [1, 1]",  # a new instance for every call
        "example.session: first proxy [1, 2], second proxy [1, 2]",  # one instance per proxy connection
        "example.single: first proxy [1, 2], second proxy [3, 4]",  # one instance for everybody
        "example.created: first proxy [1001, 1002], second proxy [1003, 1004]",  # made by instance_creator
    ]


def test_serve_simple_without_name_server(spawn: Callable[..., Process]) -> None:
    server = spawn("servesimple_server.py")
    server.wait_for(r"^Pyro daemon running\.$")
    assert len(server.wait_for(r"^Object .*MyPyroThing", 2)) == 2
    uris = server.uris(2)
    assert len(set(uris)) == 2
    out = run("thing_client.py", *uris).splitlines()
    assert out == ["hello client, from MyPyroThing"] * 2


def test_serve_simple_with_custom_daemon(spawn: Callable[..., Process], nameserver: dict[str, str]) -> None:
    server = spawn("servesimple_custom_daemon.py", **nameserver)
    server.wait_for(r"^Pyro daemon running\.$")
    (uri,) = server.uris()
    assert "@localhost:" in uri  # the published (NAT) host, while bound on 127.0.0.1
    assert "name =" not in server.output  # no name: not registered in the name server
    assert run("thing_client.py", uri).splitlines() == ["hello client, from MyPyroThing"]


@pytest.mark.parametrize("script", ["example1_server.py", "example1_servesimple.py"])
def test_example_1(spawn: Callable[..., Process], script: str) -> None:
    (uri,) = spawn(script).uris()
    assert run("example1_client.py", uri) == "84\n"


@pytest.mark.parametrize("script", ["example2_server.py", "example2_servesimple.py"])
def test_example_2_with_name_server(spawn: Callable[..., Process], nameserver: dict[str, str], script: str) -> None:
    server = spawn(script, **nameserver)
    (uri,) = server.uris()
    if script == "example2_servesimple.py":
        server.wait_for(r"^    name = mythingy$")
        server.wait_for(r"^Pyro daemon running\.$")
    else:
        time.sleep(0.1)  # printed right after ns.register
    assert run("example2_client.py", **nameserver) == "84\n"
    found = run("daemon_object_client.py", URI_LOCATION.search(uri).group(1))  # type: ignore[union-attr]
    assert "'Pyro.Daemon'" in found


def test_unregister() -> None:
    out = run("unregister.py").splitlines()
    assert out[0] == "before unregister: 42"
    assert out[1] == "registered now: nothing"
    assert len(out) == 4
    for line in out[2:]:
        assert re.fullmatch(r"after unregister: connection to 127\.0\.0\.1:\d+ rejected: unknown object", line), line


def test_attributes_added_and_removed() -> None:
    out = run("attributes.py").splitlines()
    assert re.fullmatch(r"_pyroId: obj_[0-9a-f]{32}", out[0]), out[0]
    assert out[1:] == [
        "_pyroId is the object id in the uri: True",
        "_pyroDaemon is the daemon: True",
        "after unregister, has _pyroId: False",
        "after unregister, has _pyroDaemon: False",
    ]


# --- the request loop and cleaning up -------------------------------------------------------------
@pytest.mark.parametrize("servertype", ["thread", "multiplex"])
def test_request_loop_with_loop_condition(spawn: Callable[..., Process], servertype: str) -> None:
    server = spawn("loopcondition_server.py", PYRO_SERVERTYPE=servertype)
    (uri,) = server.uris()
    out = run("stop_client.py", uri)
    assert "method(21) = 42" in out and "asked the server to stop" in out
    assert server.wait_exit() == 0
    assert server.output.splitlines()[1:] == ["request loop ended: loopCondition returned False", "daemon closed"]


@pytest.mark.parametrize("servertype", ["thread", "multiplex"])
def test_own_event_loop(spawn: Callable[..., Process], servertype: str) -> None:
    server = spawn("eventloop_server.py", PYRO_SERVERTYPE=servertype)
    (uri,) = server.uris()
    server.wait_for(f"^server type: {servertype}$")
    out = run("stop_client.py", uri)
    assert "method(21) = 42" in out
    assert server.wait_exit() == 0
    ended = re.search(r"own event loop ended: handled daemon events (\d+) times, did its own work (\d+) times",
                      server.output)
    assert ended and int(ended.group(1)) >= 1 and int(ended.group(2)) >= 1, server.output


@pytest.mark.parametrize("servertype", ["thread", "multiplex"])
def test_cleanup_with_shutdown(spawn: Callable[..., Process], servertype: str) -> None:
    server = spawn("shutdown_server.py", PYRO_SERVERTYPE=servertype)
    (uri,) = server.uris()
    assert "method(21) = 42" in run("stop_client.py", uri)
    assert server.wait_exit() == 0
    assert server.output.splitlines()[1:] == ["request loop ended after shutdown()", "daemon closed"]


def test_cleanup_with_statement(spawn: Callable[..., Process]) -> None:
    server = spawn("with_daemon.py")
    (uri,) = server.uris()
    assert "method(21) = 42" in run("stop_client.py", uri)
    assert server.wait_exit() == 0
    assert server.output.splitlines()[1:] == [
        "with block left; listening socket closed: True",
        "the closed daemon can't be used again: daemon is closed",
    ]


# --- autoproxy, the daemon object, addresses ------------------------------------------------------
def test_autoproxy(spawn: Callable[..., Process]) -> None:
    (uri,) = spawn("autoproxy_server.py").uris()
    assert run("autoproxy_client.py", uri).splitlines() == [
        "got a proxy: True",
        "it points at a new object in the server: True",
        "increment() three times: [1, 2, 3]",
    ]


def test_daemon_object_of_the_name_server(nameserver: dict[str, str]) -> None:
    out = run("daemon_object_client.py", **nameserver).splitlines()
    assert out[0] == "ping(): None"
    registered = re.fullmatch(r"registered\(\): (\[.*\])", out[1])
    assert registered and sorted(ast.literal_eval(registered.group(1))) == ["Pyro.Daemon", "Pyro.NameServer"]
    assert out[2].startswith(f"info(): Pyro.Daemon bound on 127.0.0.1:{nameserver['PYRO_NS_PORT']}")


def test_network_address() -> None:
    out = run("network_address.py").splitlines()
    assert out[:3] == [
        "getIpAddress('localhost'): 127.0.0.1",
        "getIpAddress('127.0.0.1'): 127.0.0.1",
        "getInterfaceAddress('127.0.0.1'): 127.0.0.1",
    ]
    assert re.fullmatch(r"daemon bound on: 127\.0\.0\.1:\d+", out[3]), out[3]


# --- server types -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("servertype", "low", "high"), [("thread", 0.45, 0.9), ("multiplex", 0.95, 3.0)])
def test_concurrency_of_the_server_types(
    spawn: Callable[..., Process], servertype: str, low: float, high: float
) -> None:
    """Two 0.5 s calls from two clients: about 0.5 s together on the thread server, 1 s on multiplex."""
    server = spawn("concurrency_server.py", servertype)
    (uri,) = server.uris()
    server.wait_for(f"^server type: {servertype}$")
    out = run("concurrency_client.py", uri)
    took = re.search(r"two 0\.5 s calls from two clients took ([\d.]+) s", out)
    assert took, out
    assert low <= float(took.group(1)) < high, out
