"""Flame: refused unless enabled and pickle-only; everything works over 127.0.0.1 when it is."""

from __future__ import annotations

import os
import pickle
import stat
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyroplug.core import errors
from pyroplug.core.config import Config, config
from pyroplug.core.constants import FLAME_NAME
from pyroplug.core.daemon import Daemon
from pyroplug.core.proxy import Proxy
from pyroplug.core.registry import get_registry
from pyroplug.testing.interop import Peer, run_peer
from pyroplug.tools import flame, flameserver
from pyroplug.tools.flame import (
    Flame,
    FlameBuiltin,
    FlameModule,
    PickleRequiredError,
    RemoteInteractiveConsole,
)

#: the methods stock Pyro4's Flame object exposes
FLAME_METHODS = {"module", "builtin", "execute", "evaluate", "sendmodule", "getmodule", "sendfile", "getfile",
                 "console", "invokeBuiltin", "invokeModule"}


def flame_config(**items: Any) -> Config:
    cfg = config.copy()
    cfg.POLLTIMEOUT = 0.2
    cfg.FLAME_ENABLED = True
    cfg.SERIALIZERS_ACCEPTED = {"pickle"}
    for name, value in items.items():
        setattr(cfg, name, value)
    return cfg


@pytest.fixture(scope="module")
def flame_location() -> Iterator[str]:
    """A Flame server (enabled, pickle only) in a daemon thread on 127.0.0.1."""
    daemon = Daemon(host="127.0.0.1", config=flame_config())
    uri = flame.start(daemon)
    assert uri.object == FLAME_NAME == "Pyro.Flame"
    thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    thread.start()
    try:
        yield daemon.locationStr
    finally:
        daemon.shutdown()
        thread.join(5)
        daemon.close()


@pytest.fixture
def pickle_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "SERIALIZER", "pickle")


@pytest.fixture
def remote(flame_location: str, pickle_client: None) -> Iterator[Proxy]:
    with flame.connect(flame_location) as proxy:
        yield proxy


def test_start_refuses_unless_enabled() -> None:
    assert config.FLAME_ENABLED is False  # off by default
    with Daemon(host="127.0.0.1", config=flame_config(FLAME_ENABLED=False)) as daemon:
        with pytest.raises(errors.SecurityError, match="Flame is disabled.*anyone who can connect can run any code"):
            flame.start(daemon)
        assert FLAME_NAME not in daemon.objectsById


@pytest.mark.parametrize("accepted", [{"serpent"}, {"pickle", "serpent"}, {"pickle", "json", "marshal"}])
def test_start_refuses_unless_pickle_only(accepted: set[str]) -> None:
    with Daemon(host="127.0.0.1", config=flame_config(SERIALIZERS_ACCEPTED=accepted)) as daemon:
        with pytest.raises(PickleRequiredError, match="pickle serializer exclusively") as info:
            flame.start(daemon)
        assert isinstance(info.value, errors.SecurityError)  # a clear security refusal...
        assert isinstance(info.value, errors.SerializeError)  # ...and what stock Pyro4 raises here
        assert FLAME_NAME not in daemon.objectsById
    with pytest.raises(PickleRequiredError):
        Flame(flame_config(SERIALIZERS_ACCEPTED=accepted))


def test_global_flame_enabled_counts_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "FLAME_ENABLED", True)  # Pyro4 programs set the global config item
    with Daemon(host="127.0.0.1", config=flame_config(FLAME_ENABLED=False)) as daemon:
        assert flame.start(daemon).object == FLAME_NAME


def test_connect_requires_the_pickle_serializer(flame_location: str) -> None:
    assert config.SERIALIZER == "serpent"
    with pytest.raises(PickleRequiredError, match="requires the pickle serializer"):
        flame.connect(flame_location)


def test_daemon_refuses_other_serializers(flame_location: str) -> None:
    proxy = Proxy(f"PYRO:{FLAME_NAME}@{flame_location}")
    proxy._pyroSerializer = "serpent"
    with pytest.raises(errors.CommunicationError):
        proxy.evaluate("1+1")
    proxy._pyroRelease()


def test_metadata_matches_pyro4(remote: Proxy) -> None:
    assert remote._pyroMethods == FLAME_METHODS
    assert remote._pyroAttrs == set() and remote._pyroOneway == set()


def test_evaluate_and_execute_share_a_namespace(remote: Proxy) -> None:
    assert remote.evaluate("6*7") == 42
    assert remote.evaluate("sys.version_info[0]") == sys.version_info[0]  # seeded like Pyro4's globals
    assert remote.execute("import math\nflame_value = math.factorial(5)\n\n  ") is None
    assert remote.evaluate("flame_value") == 120
    with pytest.raises(ZeroDivisionError):
        remote.evaluate("1/0")
    with pytest.raises(SyntaxError):
        remote.execute("def (")


def test_module_proxies(remote: Proxy) -> None:
    os_module = remote.module("os")
    assert isinstance(os_module, FlameModule)
    assert os_module.module == "os"
    assert os_module.getcwd() == os.getcwd()  # same machine
    assert os_module.path.join("a", "b") == os.path.join("a", "b")  # dotted names
    assert "module 'os'" in repr(os_module)
    assert remote.module("json").dumps({"k": [1]}, sort_keys=True) == '{"k": [1]}'  # kwargs travel
    with pytest.raises(ModuleNotFoundError):
        remote.module("no_such_module_here")
    with pytest.raises(AttributeError):
        os_module.no_such_function()
    with os_module:
        pass  # releases its proxy; the next call reconnects
    assert os_module.getpid() == os.getpid()


def test_builtin(remote: Proxy) -> None:
    maximum = remote.builtin("max")
    assert isinstance(maximum, FlameBuiltin)
    assert maximum(3, 9, 4) == 9
    assert remote.builtin("sorted")([3, 1, 2], reverse=True) == [3, 2, 1]
    with pytest.raises(AttributeError):
        remote.builtin("no_such_builtin")()


def test_sendmodule_getmodule(remote: Proxy) -> None:
    name = f"flame_test_{uuid.uuid4().hex[:8]}"
    source = "VALUE = 21\n\ndef double(x):\n    return 2 * x\n"
    try:
        assert remote.sendmodule(f"{name}.sub", source) is None
        remote.execute(f"import {name}.sub")
        assert remote.evaluate(f"{name}.sub.double({name}.sub.VALUE)") == 42
        assert remote.module(f"{name}.sub").double(4) == 8
        assert remote.getmodule(f"{name}.sub") == source  # the sent source comes back
        remote.sendmodule(f"{name}.sub", "VALUE = 1\n")  # sending again re-runs the new source in it
        assert remote.evaluate(f"{name}.sub.VALUE") == 1
        assert "def dumps(" in remote.getmodule("json")
        assert "def join(" in remote.getmodule("os.path")  # the dotted module itself
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


def test_create_module_into_namespace() -> None:
    name = f"flame_ns_{uuid.uuid4().hex[:8]}"
    namespace: dict[str, Any] = {}
    try:
        module = flame.createModule(f"{name}.inner", "X = 5", namespace=namespace)
        assert module.X == 5 and sys.modules[f"{name}.inner"] is module
        assert namespace[name].inner is module
    finally:
        for key in [k for k in sys.modules if k.startswith(name)]:
            del sys.modules[key]


def test_sendfile_getfile(remote: Proxy, tmp_path: Path) -> None:
    target = tmp_path / "sent.bin"
    data = bytes(range(256)) * 4
    assert remote.sendfile(str(target), data) is None
    assert target.read_bytes() == data
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    target.chmod(0o644)
    remote.sendfile(str(target), b"again")
    assert target.read_bytes() == b"again" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert remote.getfile(str(target)) == b"again"
    with pytest.raises(FileNotFoundError):
        remote.getfile(str(tmp_path / "missing"))


def test_console(remote: Proxy, flame_location: str) -> None:
    console = remote.console()
    assert isinstance(console, RemoteInteractiveConsole)
    remote_console = console.remoteconsole
    assert f"(Remote console on {flame_location})" in remote_console.get_banner()
    assert remote_console._pyroMethods == {"push_and_get_output", "get_banner", "write", "terminate"}  # as Pyro4
    assert remote_console.push_and_get_output("x = 6") == ("", False)
    assert remote_console.push_and_get_output("def f():") == ("", True)
    assert remote_console.push_and_get_output("    return x * 7") == ("", True)
    assert remote_console.push_and_get_output("") == ("", False)
    assert remote_console.push_and_get_output("print(f())") == ("42\n", False)
    output, more = remote_console.push_and_get_output("1/0")
    assert "ZeroDivisionError" in output and more is False
    object_id = remote_console._pyroUri.object
    console.close()  # unregisters the console object
    with Proxy(f"PYRO:Pyro.Daemon@{flame_location}") as daemon_object:
        daemon_object._pyroSerializer = "pickle"
        assert object_id not in daemon_object.registered()


def test_console_interact(remote: Proxy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    lines = iter(["y = 2 + 3", "print(y * 10)"])

    def fake_input(prompt: str = "") -> str:
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    with remote.console() as console:
        console.interact()
    captured = capsys.readouterr()
    assert "50\n" in captured.out
    assert "(Remote session ended)" in captured.err


def test_objects_travel_under_pyro4_names(remote: Proxy) -> None:
    module = remote.module("os")
    ser = get_registry().serializer("pickle")(config)
    data = ser.dumps([module, remote.builtin("len")])
    assert b"Pyro4.utils.flame" in data and b"FlameModule" in data and b"FlameBuiltin" in data
    assert b"pyroplug" not in data  # a stock Pyro4 client needs no pyroplug to load them
    loaded = ser.loads(data)
    assert type(loaded[0]) is FlameModule and type(loaded[1]) is FlameBuiltin
    assert loaded[0].module == "os" and isinstance(loaded[0].flameserver, Proxy)
    assert loaded[0].flameserver._pyroSerializer == "pickle"
    assert pickle.loads(pickle.dumps("x")) == "x"
    json_ser = get_registry().serializer("json")(config)
    with pytest.raises(errors.SerializeError, match="only with the pickle serializer"):
        json_ser.dumps(module)


def test_hmac_key(pickle_client: None) -> None:
    daemon = Daemon(host="127.0.0.1", config=flame_config())
    daemon._pyroHmacKey = b"flame-key"
    flame.start(daemon)
    thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    thread.start()
    try:
        with flame.connect(daemon.locationStr, hmac_key=b"flame-key") as remote:
            assert remote.evaluate("1+1") == 2
            assert remote.module("os").getpid() == os.getpid()  # the key travels in the module's proxy
        with pytest.raises(errors.CommunicationError):
            flame.connect(daemon.locationStr)
    finally:
        daemon.shutdown()
        thread.join(5)
        daemon.close()


def test_flameserver_refuses_unless_enabled() -> None:
    done = run_peer([sys.executable, "-m", "pyroplug.tools.flameserver", "-H", "127.0.0.1"], timeout=20)
    assert done.returncode == 1
    assert "Flame is disabled" in done.stderr and "anyone who can connect can run any code" in done.stderr
    assert "PYRO_FLAME_ENABLED=true" in done.stderr
    helped = run_peer([str(Path(sys.executable).parent / "pyroplug-flameserver"), "--help"], timeout=20)
    assert helped.returncode == 0
    assert "anyone who can connect can run any code on this machine" in " ".join(helped.stdout.split())


def test_flameserver_main_in_process(monkeypatch: pytest.MonkeyPatch, pickle_client: None) -> None:
    monkeypatch.setattr(config, "FLAME_ENABLED", True)
    monkeypatch.delenv("PYRO_HMAC_KEY", raising=False)
    daemon, uri = flameserver.main(["-H", "127.0.0.1", "-q"], returnWithoutLooping=True)
    try:
        assert uri.object == FLAME_NAME
        assert daemon.config.SERIALIZERS_ACCEPTED == {"pickle"}  # forced, whatever the global config says
        assert config.SERIALIZERS_ACCEPTED != {"pickle"}  # ...without changing the global config
    finally:
        daemon.close()


def test_flameserver_cli(pickle_client: None) -> None:
    argv = [sys.executable, "-m", "pyroplug.tools.flameserver", "-H", "127.0.0.1", "-p", "0"]
    peer = Peer(argv, env={"PYRO_FLAME_ENABLED": "true", "PYRO_HMAC_KEY": "cli-key"}, ready=None, name="flameserver")
    try:
        line = peer.wait_for("server uri: ", 20)
        location = line.split("@", 1)[1].strip()
        peer.wait_for("server is running.", 5)
        with flame.connect(location, hmac_key="cli-key") as remote:
            assert remote.evaluate("os.getpid()") == peer.proc.pid
            assert remote.module("os").getpid() == peer.proc.pid
        with pytest.raises(errors.CommunicationError):
            flame.connect(location)
    finally:
        rc = peer.stop()
    assert rc == 0, peer.describe()
    assert any("Warning: Flame is enabled" in line for line in peer.output)
