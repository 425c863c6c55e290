"""Tests of the user guide in docs/: every ```python block runs, stated output matches, tables are current.

Conventions (docs/index.md explains them to writers, in an HTML comment at its end):

* Every ```python block is run as its own program (``python -c``-like, in a subprocess with a temporary
  working directory, no ``PYRO_*`` variables from the caller's environment) and must exit with code 0.
  Blocks that are not Python programs use another fence language (``console``, ``toml``, ``text``).
* An HTML comment on the line before the block tunes the run: ``<!-- test: OPTION OPTION ... -->``.

  - ``ns``: a fresh name server runs on 127.0.0.1 for this block; ``PYRO_NS_HOST``/``PYRO_NS_PORT`` point
    the block's ``locateNS()`` and ``PYRONAME:`` lookups at it.
  - ``output``: the next fenced block (```text) is the exact stdout; ``...`` in a line matches any text,
    a line of just ``...`` any number of lines.
  - ``server=NAME``: the block is a server; it runs in the background until the client is done. It must
    print its URI (``PYRO:...``) first, or the ``ready=TEXT`` line when it has no URI to print.
  - ``client=NAME``: the block is the client of server NAME; it gets the server's URI as ``sys.argv[1]``.
  - ``env=KEY:VALUE``: an environment variable for the block (``PYRO_*`` included).
  - ``certs``: TLS files in the working directory: ``ca.pem``, ``server.pem``/``server.key`` (for
    localhost and 127.0.0.1) and ``client.pem``/``client.key``, all signed by ``ca.pem``.
  - ``requires=MODULE``: skip when MODULE cannot be imported (an optional plugin).
"""

from __future__ import annotations

import ast
import concurrent.futures
import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
SNIPPET_TIMEOUT = 25.0
URI_RE = re.compile(r"PYRO:\S+")
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+)(?P<lang>[\w+-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*test:(?P<options>.*?)-->\s*$")

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------------------------------------- parsing
@dataclass
class Block:
    """One fenced code block of a page."""

    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    options: dict[str, list[str]] = field(default_factory=dict)
    expected: str | None = None  # the stated output, for ``output`` blocks

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def parse_options(text: str) -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    for word in text.split():
        key, _, value = word.partition("=")
        options.setdefault(key, [])
        if value:
            options[key].append(value)
    return options


def parse_page(path: Path) -> list[Block]:
    """Every fenced block of a markdown page, with its test options and stated output."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m.group("fence"), len(m.group("indent"))
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        if i >= len(lines):
            raise AssertionError(f"{path.name}:{start + 1}: unclosed code fence")
        options: dict[str, list[str]] = {}
        prev = start - 1
        if prev >= 0 and (mm := MARKER.match(lines[prev])):
            options = parse_options(mm.group("options"))
        blocks.append(Block(path.name, start + 1, m.group("lang"), "\n".join(body) + "\n", options))
        i += 1
    for index, block in enumerate(blocks):
        if block.lang == "python" and "output" in block.options:
            following = blocks[index + 1] if index + 1 < len(blocks) else None
            if following is None or following.lang != "text":
                raise AssertionError(f"{block.id}: an 'output' block must be followed by a ```text block")
            block.expected = following.code
    return blocks


ALL_BLOCKS = [b for page in PAGES for b in parse_page(page)]
PYTHON_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "python"]
SERVERS = {b.options["server"][0]: b for b in PYTHON_BLOCKS if b.options.get("server")}
#: the blocks run as tests of their own (servers run as part of their client's test)
RUNNABLE = [b for b in PYTHON_BLOCKS if "server" not in b.options]


# ---------------------------------------------------------------------------------------------- running
def clean_env(block: Block, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYRO_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for item in block.options.get("env", []):
        key, _, value = item.partition(":")
        env[key] = value
    env.update(extra or {})
    return env


@contextlib.contextmanager
def name_server() -> Iterator[dict[str, str]]:
    """A fresh pyroplug name server on 127.0.0.1 (no broadcast), as PYRO_NS_HOST / PYRO_NS_PORT values."""
    from pyroplug.core.config import Config
    from pyroplug.naming import startNS

    cfg = Config()
    cfg.POLLTIMEOUT = 0.2
    _uri, daemon, _bc = startNS(host="127.0.0.1", port=0, enableBroadcast=False, config=cfg)
    thread = threading.Thread(target=daemon.requestLoop, name="docs-ns", daemon=True)
    thread.start()
    try:
        yield {"PYRO_NS_HOST": "127.0.0.1", "PYRO_NS_PORT": str(daemon.sock.getsockname()[1])}
    finally:
        daemon.shutdown()
        thread.join(10)
        daemon.close()


def make_certs(directory: Path) -> None:
    from pyroplug.testing.certs import make_pki

    pki = make_pki(directory / "pki")
    for source, name in ((pki.ca.cert, "ca.pem"), (pki.server.cert, "server.pem"), (pki.server.key, "server.key"),
                         (pki.client.cert, "client.pem"), (pki.client.key, "client.key")):
        shutil.copy(source, directory / name)


class Background:
    """A server block running in the background; its output is collected by a thread."""

    def __init__(self, block: Block, cwd: Path, env: dict[str, str]) -> None:
        script = cwd / f"server_{block.line}.py"
        script.write_text(block.code, encoding="utf-8")
        self.block = block
        self.popen = subprocess.Popen([sys.executable, str(script)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_ready(self, timeout: float = SNIPPET_TIMEOUT) -> str:
        """The URI the server printed (or its ready line)."""
        ready = self.block.options.get("ready")
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in self.lines:
                    if ready and ready[0] in line:
                        return line
                    if not ready and (m := URI_RE.search(line)):
                        return m.group(0)
                if time.monotonic() > deadline or (self.popen.poll() is not None and not self.reader.is_alive()):
                    raise AssertionError(f"server {self.block.id} never got ready:\n" + "\n".join(self.lines))
                self.changed.wait(0.1)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self.reader.join(5)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_block(block: Block, workdir: Path) -> Result:
    """Run one block as a program (with its server and name server when it has them)."""
    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        extra: dict[str, str] = {}
        server_block = SERVERS.get(block.options["client"][0]) if block.options.get("client") else None
        wants = [block] + ([server_block] if server_block else [])
        if any("ns" in b.options for b in wants):
            extra.update(stack.enter_context(name_server()))
        if any("certs" in b.options for b in wants):
            make_certs(workdir)
        argv: list[str] = []
        if block.options.get("client"):
            if server_block is None:
                raise AssertionError(f"{block.id}: no server block named {block.options['client'][0]!r}")
            server = Background(server_block, workdir, clean_env(server_block, extra))
            stack.callback(server.stop)
            argv.append(server.wait_ready())
        script = workdir / f"block_{block.line}.py"
        script.write_text(block.code, encoding="utf-8")
        try:
            proc = subprocess.run([sys.executable, str(script), *argv], cwd=workdir, env=clean_env(block, extra),
                                  capture_output=True, text=True, timeout=SNIPPET_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            return Result(-1, str(exc.stdout or ""), f"timed out after {SNIPPET_TIMEOUT} s\n{exc.stderr or ''}")
        return Result(proc.returncode, proc.stdout, proc.stderr)


def output_matches(expected: str, actual: str) -> bool:
    """Line by line, trailing blanks ignored; ``...`` in a line matches any text, a line of just ``...``
    any number of lines (none included)."""
    parts = []
    for line in expected.rstrip("\n").splitlines():
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append("[^\n]*".join(re.escape(piece) for piece in line.rstrip().split("...")) + r"\n")
    text = "".join(line.rstrip() + "\n" for line in actual.rstrip("\n").splitlines())
    return re.fullmatch("".join(parts), text) is not None


@pytest.fixture(scope="session")
def docs_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, concurrent.futures.Future[Result]]:
    """Start every selected block at once (a few at a time): each test then waits for its own result."""
    selected = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and isinstance(callspec.params.get("block"), Block):
            selected.append(callspec.params["block"])
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(2, min(6, (os.cpu_count() or 2) * 2)))
    request.addfinalizer(lambda: pool.shutdown(wait=True, cancel_futures=True))
    base = tmp_path_factory.mktemp("docs")
    futures = {}
    selected.sort(key=lambda b: "pytest.main" not in b.code)  # the slow ones (conformance suites) first
    for block in selected:
        if any(importlib.util.find_spec(m) is None for m in block.options.get("requires", [])):
            continue
        workdir = base / block.id.replace(":", "_").replace(".", "_")
        futures[block.id] = pool.submit(run_block, block, workdir)
    return futures


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_python_block_runs(block: Block, docs_runs: dict[str, concurrent.futures.Future[Result]]) -> None:
    for module in block.options.get("requires", []):
        pytest.importorskip(module)
    result = docs_runs[block.id].result(timeout=SNIPPET_TIMEOUT * 3)
    assert result.returncode == 0, f"{block.id} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
    if block.expected is not None:
        assert output_matches(block.expected, result.stdout), (
            f"{block.id}: output differs from the docs.\n--- stated:\n{block.expected}--- actual:\n{result.stdout}"
        )


# ---------------------------------------------------------------------------------------------- the pages
def test_pages_exist() -> None:
    names = {p.name for p in PAGES}
    expected = {"index.md", "intro.md", "clients.md", "servers.md", "nameserver.md", "security.md",
                "configuration.md", "plugins.md", "tips.md"}
    assert expected <= names, f"missing pages: {expected - names}"


def test_index_links_every_page() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for page in PAGES:
        if page.name != "index.md":
            assert f"({page.name}" in index, f"index.md does not link {page.name}"


LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    anchors_cache: dict[Path, set[str]] = {}
    for m in LINK.finditer(text):
        target = m.group("target")
        if re.match(r"[a-z]+:", target):
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        assert dest.exists(), f"{page.name}: broken link {target}"
        if anchor and dest.suffix == ".md":
            if dest not in anchors_cache:
                anchors_cache[dest] = _anchors(dest)
            assert anchor in anchors_cache[dest], f"{page.name}: no heading for #{anchor} in {dest.name}"


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a page."""
    anchors = set()
    in_fence = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        if in_fence or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        title = re.sub(r"[^\w\- ]", "", title)
        anchors.add(title.replace(" ", "-"))
    return anchors


def test_python_blocks_are_valid_python() -> None:
    for block in PYTHON_BLOCKS:
        try:
            ast.parse(block.code)
        except SyntaxError as exc:
            pytest.fail(f"{block.id}: {exc}")


def test_no_python_under_another_fence_name() -> None:
    """```py, ```python3, ```pycon ... would escape the tests: only ```python is Python."""
    for block in ALL_BLOCKS:
        assert block.lang not in ("py", "python3", "pycon", "py3", "ipython"), f"{block.id}: use ```python"


def test_every_client_has_its_server_and_every_server_a_client() -> None:
    clients = {b.options["client"][0] for b in PYTHON_BLOCKS if b.options.get("client")}
    assert clients <= set(SERVERS), f"clients without a server block: {clients - set(SERVERS)}"
    assert set(SERVERS) <= clients, f"server blocks nobody runs: {set(SERVERS) - clients}"


def test_markers_only_precede_python_blocks() -> None:
    known = {"ns", "output", "server", "client", "env", "certs", "requires", "ready"}
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            if MARKER.match(line):
                nxt = lines[number + 1] if number + 1 < len(lines) else ""
                assert nxt.startswith("```python"), f"{page.name}:{number + 1}: test marker not before a ```python block"
                unknown = set(parse_options(MARKER.match(line).group("options"))) - known  # type: ignore[union-attr]
                assert not unknown, f"{page.name}:{number + 1}: unknown test options {unknown}"


def test_readme_points_to_the_docs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "## Documentation" in readme and "docs/index.md" in readme


# ---------------------------------------------------------------------------------------------- generated parts
def _config_table_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("docs_config_table", DOCS / "config_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_meanings_cover_exactly_the_items() -> None:
    from pyroplug.core.config import item_names

    table = _config_table_module()
    assert set(table.MEANINGS) == set(item_names()), (
        f"missing: {set(item_names()) - set(table.MEANINGS)}; stale: {set(table.MEANINGS) - set(item_names())}"
    )
    for name, (_text, value) in table.SYMBOLIC_DEFAULTS.items():
        from pyroplug.core.config import Config

        assert getattr(Config(), name) == value, f"symbolic default of {name} no longer matches"


def test_config_table_is_current() -> None:
    table = _config_table_module()
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert table.replace_in_page(page) == page, "docs/configuration.md is stale: run python docs/config_table.py --write"


def _hookspec_signatures() -> dict[str, str]:
    """Each hook's ``def`` line exactly as written in pyroplug/core/hookspec.py (type-ignore comment dropped)."""
    source = (ROOT / "pyroplug" / "core" / "hookspec.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    lines = source.splitlines()
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any(
            isinstance(d, ast.Name) and d.id == "hookspec" for d in node.decorator_list
        ):
            text = "\n".join(lines[node.lineno - 1 : node.body[0].lineno - 1])
            found[node.name] = re.sub(r"\s*#.*$", "", text.strip().splitlines()[0])
    return found


def test_plugin_guide_has_every_hook_with_its_exact_signature() -> None:
    guide = (DOCS / "plugins.md").read_text(encoding="utf-8")
    signatures = _hookspec_signatures()
    assert signatures, "no hook specs found"
    for name, signature in signatures.items():
        assert signature in guide, f"plugins.md lacks the exact signature of {name}: {signature}"


def test_plugin_guide_names_every_abstract_method_of_the_base_classes() -> None:
    from pyroplug.core.serializer import Serializer
    from pyroplug.core.servertype import ServerType
    from pyroplug.core.transport import Connection, Listener, Transport
    from pyroplug.naming.storage import Storage

    guide = (DOCS / "plugins.md").read_text(encoding="utf-8")
    for base in (Serializer, Transport, Listener, Connection, ServerType, Storage):
        assert f"`{base.__name__}`" in guide, f"plugins.md does not describe {base.__name__}"
        for method in sorted(getattr(base, "__abstractmethods__", ())):
            assert f"{method}" in guide, f"plugins.md does not name {base.__name__}.{method}"


# ---------------------------------------------------------------------------------------------- names in the text
def _all_text() -> str:
    return "\n".join(page.read_text(encoding="utf-8") for page in PAGES)


def test_commands_named_in_the_docs_exist() -> None:
    import tomllib

    scripts = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"])
    named = set(re.findall(r"\b(pyroplug-[a-z][a-z-]*[a-z])\b", _all_text())) - {"pyroplug-cbor"}
    assert named <= scripts, f"commands in docs/ that pyproject.toml does not install: {named - scripts}"


ENV_ONLY = {"PYRO_LOGLEVEL", "PYRO_LOGFILE", "PYRO_HMAC_KEY", "PYRO_HTTPGATEWAY_KEY", "PYRO_PLUGINS_DISABLE",
            "PYRO_PLUGINS_AUTOLOAD"}


def test_environment_variables_named_in_the_docs_exist() -> None:
    from pyroplug.core.config import item_names

    known = {f"PYRO_{name}" for name in item_names()} | ENV_ONLY
    named = set(re.findall(r"\bPYRO_[A-Z0-9_]*[A-Z0-9]\b", _all_text()))
    assert named <= known, f"unknown variables in docs/: {named - known}"


def test_config_items_named_in_the_docs_exist() -> None:
    """Every `UPPER_CASE` word in backticks that looks like a config item is one."""
    from pyroplug.core.config import item_names

    items = set(item_names())
    candidates = set(re.findall(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|[A-Z]{4,})`", _all_text()))
    not_items = {"MSG_PING", "MSG_CONNECT", "CONNECTFAIL", "TCP_NODELAY", "SO_REUSEADDR", "MSG_WAITALL", "HMAC", "CORR",
                 "ORDR", "TAGS", "ABCD", "GET_NSURI", "DAEMON_NAME", "BLBI", "STRM", "SIGTERM", "NAME", "KIND",
                 "DEBUG", "INFO", "WARNING"}
    unknown = {c for c in candidates - not_items if not c.startswith("PYRO_")} - items
    assert not unknown, f"names in backticks that are not config items: {unknown}"
