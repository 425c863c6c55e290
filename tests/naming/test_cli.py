"""The command-line tools as subprocesses: pyroplug-ns, pyroplug-nsc, pyroplug-echoserver (loopback only)."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import Pyro4
import pytest

from pyroplug.core.proxy import Proxy
from pyroplug.core.uri import URI
from tests.naming.conftest import PYTHON, free_port, test_env

BIN = Path(PYTHON).parent
pytestmark = pytest.mark.timeout(120)


def _script(name: str) -> list[str]:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed (pip install -e .)")
    return [str(path)]


class Lines:
    """Collects a process's stdout lines in a background thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def until(self, marker: str, timeout: float = 20.0) -> list[str]:
        """Lines up to and including the first containing ``marker``."""
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            lines.append(line)
            self.seen.append(line)
            if marker in line:
                return lines
        raise AssertionError(f"{marker!r} not seen; output so far: {self.seen}")

    def rest(self) -> str:
        """Everything after what was read, once the process has ended."""
        self.thread.join(20)
        lines = []
        while True:
            try:
                line = self.queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                lines.append(line)
        return "\n".join(lines)


def start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], Lines]:
    proc = subprocess.Popen(args, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, Lines(proc)


def finish(proc: subprocess.Popen[str], out: Lines) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait(20)
    return code, out.rest()


class NSProcess:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc, self.out = start(_script("pyroplug-ns") + list(args), env or test_env())
        self.lines = self.out.until("URI = ")
        if self.lines[-1].startswith("internal URI = "):
            self.lines += self.out.until("external URI = ")
        self.uri = URI(self.lines[-1].split("URI = ", 1)[1])

    def stop(self) -> tuple[int, str]:
        return finish(self.proc, self.out)


@pytest.fixture
def ns_proc() -> Iterator[NSProcess]:
    ns = NSProcess("-n", "127.0.0.1", "-p", "0", "-x")
    yield ns
    ns.stop()


def nsc(ns: NSProcess | None, *args: str, stdin: str = "", env: dict[str, str] | None = None,
        tool: str = "pyroplug-nsc") -> subprocess.CompletedProcess[str]:
    where = ["-n", "127.0.0.1", "-p", str(ns.uri.port)] if ns is not None else []
    return subprocess.run(_script(tool) + where + list(args), env=env or test_env(), input=stdin, text=True,
                          capture_output=True, timeout=60)


# ---------------------------------------------------------------------- help and usage
@pytest.mark.parametrize("tool", ["pyroplug-ns", "pyroplug-nsc", "pyroplug-echoserver", "pyroplug-check-config"])
def test_console_scripts_help(tool: str) -> None:
    done = subprocess.run(_script(tool) + ["--help"], env=test_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "usage:" in done.stdout or tool == "pyroplug-check-config"


@pytest.mark.parametrize("module,expect", [
    ("pyroplug.naming", "--storage"),
    ("pyroplug.naming.ns", "--nobc"),
    ("pyroplug.naming.nsc", "listmeta_all"),
    ("pyroplug.tools.echoserver", "--nameserver"),
])
def test_python_dash_m(module: str, expect: str) -> None:
    done = subprocess.run([PYTHON, "-m", module, "--help"], env=test_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and expect in done.stdout


def test_ns_usage_errors(tmp_path: Path) -> None:
    ns = _script("pyroplug-ns")
    bad = subprocess.run(ns + ["-n", "127.0.0.1", "-p", "0", "-s", "redis:nowhere"], env=test_env(),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid storage type 'redis:nowhere'" in bad.stderr and "available:" in bad.stderr
    bad = subprocess.run(ns + ["-n", "127.0.0.1", "-p", "0", "--servertype", "bogus"], env=test_env(),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown server type 'bogus'" in bad.stderr
    bad = subprocess.run(ns + ["-p", "notaport"], env=test_env(), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid int value" in bad.stderr
    bad = subprocess.run(ns + ["-n", "127.0.0.1", "-p", "0", "--natport", "5555"], env=test_env(),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "natport" in bad.stderr
    bad = subprocess.run(ns + ["-n", "127.0.0.1", "-p", "0", "-k", "x"], env=test_env(PYRO_HMAC_KEY="y"),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "PYRO_HMAC_KEY" in bad.stderr


def test_ns_port_in_use_exit_1(ns_proc: NSProcess) -> None:
    busy = subprocess.run(_script("pyroplug-ns") + ["-n", "127.0.0.1", "-p", str(ns_proc.uri.port), "-x"],
                          env=test_env(PYRO_SOCK_REUSE="0"), capture_output=True, text=True, timeout=60)
    assert busy.returncode == 1 and "cannot run the name server" in busy.stderr


def test_ns_nat_uris() -> None:
    ns = NSProcess("-n", "127.0.0.1", "-p", "0", "-x", "--nathost", "nat.example.org")
    try:
        internal = next(line for line in ns.lines if line.startswith("internal URI = "))
        assert internal == f"internal URI = PYRO:Pyro.NameServer@127.0.0.1:{ns.uri.port}"
        assert ns.lines[-1] == f"external URI = PYRO:Pyro.NameServer@nat.example.org:{ns.uri.port}"
    finally:
        ns.stop()


def test_ns_output_and_clean_shutdown() -> None:
    ns = NSProcess("-n", "127.0.0.1", "-p", "0", "--servertype", "thread")
    assert nsc(ns, "ping").returncode == 0
    assert "Not starting broadcast server for localhost." in ns.lines
    assert any(line.startswith("NS running on 127.0.0.1:") for line in ns.lines)
    assert "Warning: HMAC key not set. Anyone can connect to this server!" in ns.lines
    code, out = ns.stop()
    assert code == 0 and "NS shut down." in out


# ---------------------------------------------------------------------- pyroplug-nsc
def test_nsc_commands(ns_proc: NSProcess) -> None:
    ok = nsc(ns_proc, "ping")
    assert ok.returncode == 0 and ok.stdout.strip() == "Name server ping ok."
    assert nsc(ns_proc, "register", "app.one", "PYRO:one@localhost:1111").stdout.strip() == "Registered app.one"
    dup = nsc(ns_proc, "register", "app.one", "PYRO:other@localhost:1")
    assert dup.returncode == 1 and "NamingError - name already registered: app.one" in dup.stderr
    bad = nsc(ns_proc, "register", "app.bad", "not-a-uri")
    assert bad.returncode == 1 and "invalid uri" in bad.stderr
    assert nsc(ns_proc, "register", "app.two", "PYRO:two@localhost:2222").returncode == 0
    assert nsc(ns_proc, "setmeta", "app.one", "red", "big").stdout.strip() == "Metadata updated"
    assert nsc(ns_proc, "setmeta", "app.two", "red").returncode == 0
    looked = nsc(ns_proc, "lookup", "app.one")
    assert looked.stdout.splitlines() == ["PYRO:one@localhost:1111", "metadata: ['big', 'red']"]
    listed = nsc(ns_proc, "list", "app.").stdout.splitlines()
    assert listed == ["--------START LIST - prefix 'app.'", "app.one --> PYRO:one@localhost:1111",
                      "    metadata: ['big', 'red']", "app.two --> PYRO:two@localhost:2222",
                      "    metadata: ['red']", "--------END LIST - prefix 'app.'"]
    everything = nsc(ns_proc, "list").stdout
    assert "Pyro.NameServer --> PYRO:Pyro.NameServer@127.0.0.1:" in everything
    assert "app.two" in nsc(ns_proc, "listmatching", r"app\.t").stdout
    assert "app.one" not in nsc(ns_proc, "listmatching", r"app\.t").stdout
    both = nsc(ns_proc, "listmeta_all", "red", "big").stdout
    assert "app.one" in both and "app.two" not in both
    either = nsc(ns_proc, "listmeta_any", "big", "nothing").stdout
    assert "app.one" in either and "app.two" not in either
    assert nsc(ns_proc, "setmeta", "app.two").stdout.strip() == "Metadata cleared"
    unknown = nsc(ns_proc, "lookup", "nope")
    assert unknown.returncode == 1 and "NamingError - unknown name: nope" in unknown.stderr
    assert nsc(ns_proc, "remove", "app.two").stdout.strip() == "Removed app.two"
    assert nsc(ns_proc, "remove", "app.two").stdout.strip() == "Nothing removed"
    regex_bad = nsc(ns_proc, "listmatching", "(")
    assert regex_bad.returncode == 1 and "invalid regex" in regex_bad.stderr


def test_nsc_removematching_confirmation(ns_proc: NSProcess) -> None:
    for i in range(3):
        nsc(ns_proc, "register", f"gone.{i}", f"PYRO:g@localhost:{3000 + i}")
    assert "Nothing removed" in nsc(ns_proc, "removematching", "gone", stdin="n\n").stdout
    assert "Nothing removed" in nsc(ns_proc, "removematching", "gone").stdout  # EOF on stdin: no
    assert "3 items removed." in nsc(ns_proc, "removematching", "gone", stdin="y\n").stdout
    nsc(ns_proc, "register", "gone.x", "PYRO:g@localhost:1")
    assert "1 items removed." in nsc(ns_proc, "-y", "removematching", "gone").stdout


def test_nsc_usage_and_failures(ns_proc: NSProcess) -> None:
    for args, expect in ((["frobnicate"], "invalid choice"), (["lookup"], "lookup takes: lookup name"),
                         (["register", "a"], "register name uri"), (["ping", "extra"], "ping takes"),
                         (["listmeta_all"], "listmeta_all takes"), ([], "required")):
        done = nsc(ns_proc, *args)
        assert done.returncode == 2 and expect in done.stderr, (args, done.stderr)
    gone = subprocess.run(_script("pyroplug-nsc") + ["-n", "127.0.0.1", "-p", str(free_port()), "ping"],
                          env=test_env(), capture_output=True, text=True, timeout=60)
    assert gone.returncode == 1 and "Failed to locate the nameserver" in gone.stderr


def test_nsc_locates_via_config_and_verbose(ns_proc: NSProcess) -> None:
    env = test_env(PYRO_NS_PORT=ns_proc.uri.port)
    done = nsc(None, "-v", "ping", env=env)
    assert done.returncode == 0
    assert done.stdout.splitlines() == ["Locating name server...", f"Name server found: {ns_proc.uri}",
                                        "Name server ping ok.", "Done."]


def test_unix_socket_and_hmac(tmp_path: Path) -> None:
    path = str(tmp_path / "ns.sock")
    env = test_env(PYRO_HMAC_KEY="sekrit")
    ns = NSProcess("-u", path, "-x", env=env)
    try:
        assert ns.uri.sockname == path
        assert not any("HMAC key not set" in line for line in ns.lines)
        ok = subprocess.run(_script("pyroplug-nsc") + ["-u", path, "register", "u.a", "PYRO:a@./u:/x"],
                            env=env, capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0, ok.stderr
        no_key = subprocess.run(_script("pyroplug-nsc") + ["-u", path, "ping"], env=test_env(),
                                capture_output=True, text=True, timeout=60)
        assert no_key.returncode == 1
        deprecated = subprocess.run(_script("pyroplug-nsc") + ["-u", path, "-k", "sekrit", "lookup", "u.a"],
                                    env=test_env(), capture_output=True, text=True, timeout=60)
        assert deprecated.returncode == 0 and "PYRO:a@./u:/x" in deprecated.stdout
        assert "deprecated" in deprecated.stderr
    finally:
        ns.stop()


def test_sql_storage_survives_restart(tmp_path: Path) -> None:
    db = tmp_path / "names.sqlite"
    ns = NSProcess("-n", "127.0.0.1", "-p", "0", "-x", "-s", f"sql:{db}")
    try:
        assert nsc(ns, "register", "kept", "PYRO:k@localhost:4444").returncode == 0
        assert nsc(ns, "setmeta", "kept", "tag").returncode == 0
    finally:
        assert ns.stop()[0] == 0
    ns = NSProcess("-n", "127.0.0.1", "-p", "0", "-x", "-s", f"sql:{db}")
    try:
        assert "Persistent store contains 2 existing registrations." in ns.lines
        assert nsc(ns, "lookup", "kept").stdout.splitlines() == ["PYRO:k@localhost:4444", "metadata: ['tag']"]
        # the name server's own entry was refreshed for its new port
        assert f"PYRO:Pyro.NameServer@127.0.0.1:{ns.uri.port}" in nsc(ns, "list").stdout
    finally:
        ns.stop()


@pytest.mark.interop
def test_stock_pyro4_nsc_against_pyroplug_ns(ns_proc: NSProcess) -> None:
    if not (BIN / "pyro4-nsc").exists():
        pytest.skip("pyro4-nsc not installed")
    assert nsc(ns_proc, "register", "p4.x", "PYRO:x@localhost:5", tool="pyro4-nsc").stdout.strip() == "Registered p4.x"
    out = nsc(ns_proc, "list", tool="pyro4-nsc").stdout
    assert "p4.x --> PYRO:x@localhost:5" in out and "Pyro.NameServer -->" in out
    assert "PYRO:x@localhost:5" in nsc(ns_proc, "lookup", "p4.x", tool="pyro4-nsc").stdout


# ---------------------------------------------------------------------- pyroplug-echoserver
def test_echoserver_with_its_own_name_server() -> None:
    ns_port = free_port()
    env = test_env(PYRO_NS_PORT=ns_port, PYRO_NS_HOST="127.0.0.1")
    proc, out = start(_script("pyroplug-echoserver") + ["-H", "127.0.0.1", "-N", "-v"], env)
    try:
        lines = out.until("echoserver running.")
        assert "object name: test.echoserver" in lines
        assert f"using name server at PYRO:Pyro.NameServer@127.0.0.1:{ns_port}" in lines
        uri = URI(next(line for line in lines if line.startswith("echo uri: "))[10:])
        name = f"PYRONAME:test.echoserver@127.0.0.1:{ns_port}"
        with Proxy(name) as echo:
            assert echo.echo([1, "two", 3.0]) == [1, "two", 3.0]
            assert list(echo.generator()) == ["one", "two", "three"]
            assert echo.__dunder__() == "should be allowed (dunder)"
            assert echo.inf() == float("inf")
            assert echo.verbose is True
            echo.verbose = False
            assert echo.verbose is False
            assert {"oneway_echo", "oneway_slow"} <= echo._pyroOneway
            with pytest.raises(ValueError, match="expected error from echoserver error"):
                echo.error()
            with pytest.raises(AttributeError):
                echo._private()
        with Pyro4.Proxy(str(uri)) as echo4:  # a stock Pyro4 client
            assert echo4.echo("from Pyro4") == "from Pyro4"
            assert echo4.oneway_echo("x") is None
            with pytest.raises(ValueError, match="the message of the error"):
                echo4.error_with_text()
            echo4.shutdown()
        assert proc.wait(20) == 0
    finally:
        finish(proc, out)


def test_echoserver_registers_in_running_ns_and_errors(ns_proc: NSProcess) -> None:
    env = test_env(PYRO_NS_PORT=ns_proc.uri.port)
    proc, out = start(_script("pyroplug-echoserver") + ["-H", "127.0.0.1", "-n"], env)
    try:
        out.until("echoserver running.")
        assert "PYRO:test.echoserver@127.0.0.1:" in nsc(ns_proc, "lookup", "test.echoserver").stdout
        with Proxy(f"PYRONAME:test.echoserver@127.0.0.1:{ns_proc.uri.port}") as echo:
            echo.shutdown()
        assert proc.wait(20) == 0
    finally:
        finish(proc, out)
    lonely = subprocess.run(_script("pyroplug-echoserver") + ["-H", "127.0.0.1", "-n", "-q"],
                            env=test_env(PYRO_NS_PORT=free_port()), capture_output=True, text=True, timeout=60)
    assert lonely.returncode == 1 and "Failed to locate the nameserver" in lonely.stderr
    assert lonely.stdout == ""


def test_console_scripts_declared() -> None:
    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    for line in ('pyroplug-ns = "pyroplug.naming.ns:main"', 'pyroplug-nsc = "pyroplug.naming.nsc:main"',
                 'pyroplug-echoserver = "pyroplug.tools.echoserver:main"',
                 'pyroplug-check-config = "pyroplug.core.config:main"'):
        assert line in text
    assert shutil.which("pyroplug-ns", path=str(BIN)) or os.name == "nt"
