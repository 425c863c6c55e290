"""Flame (Pyro4's "Foreign Location Automatic Module Exposer"): remote modules, builtins, code and files.

.. warning::
   Flame is **remote code execution by design**: anyone who can connect to a Flame server can run any
   code on that machine, with the server's privileges, and read or write any file it can. It is OFF by
   default. A server needs ``FLAME_ENABLED`` (``PYRO_FLAME_ENABLED=true``) and a daemon that accepts the
   pickle serializer and nothing else; use it only on trusted networks, bound to localhost or behind an
   HMAC key (``PYRO_HMAC_KEY``), never on a public interface.

Server side: :func:`start` registers a :class:`Flame` object as ``Pyro.Flame`` in a daemon (the
``pyroplug-flameserver`` tool does this for you). Client side: :func:`connect` returns a proxy for it;
its methods are ``module(name)`` (a :class:`FlameModule` calling the server's module), ``builtin(name)``
(a :class:`FlameBuiltin`), ``execute(code)``, ``evaluate(expression)``, ``sendmodule(name, source)``,
``getmodule(name)``, ``sendfile(filename, data)``, ``getfile(filename)`` and ``console()`` (a
:class:`RemoteInteractiveConsole`). Wire-compatible with Pyro4 4.82 both ways: the module, builtin and
console objects travel as pickles named ``Pyro4.utils.flame.FlameModule`` (and so on), so a stock Pyro4
client gets its own classes from a pyroplug server and a pyroplug client gets these from a stock one.

Differences from Pyro4, on purpose: ``execute`` and ``evaluate`` share one namespace per Flame object
(seeded with ``sys``, ``os``, ``types``, ``code``, ``stat``, ``importlib`` and ``builtins``, the names
Pyro4's code sees) instead of the flame module's own globals; ``getmodule`` returns the source of
dotted modules themselves (Pyro4 returns the top-level package) and of modules sent with
``sendmodule``; ``sendfile`` creates files with mode 0600 from the start; the module, builtin and
console objects received through :func:`connect`'s proxy use its HMAC key (with Pyro4 they have none,
so they cannot reach a server that requires one).
"""

from __future__ import annotations

import builtins
import code
import contextlib
import importlib
import inspect
import io
import linecache
import os
import stat
import sys
import threading
import types
from typing import Any

from pyroplug.core import errors
from pyroplug.core.config import Config, accepted_set
from pyroplug.core.config import config as global_config
from pyroplug.core.constants import FLAME_NAME
from pyroplug.core.expose import expose
from pyroplug.core.proxy import Proxy
from pyroplug.core.serializer import wire_class
from pyroplug.core.uri import URI

__all__ = [
    "Flame",
    "FlameBuiltin",
    "FlameModule",
    "InteractiveConsole",
    "PickleRequiredError",
    "RemoteInteractiveConsole",
    "connect",
    "createModule",
    "start",
]

#: the pickled names of the objects Flame sends to its clients (stock Pyro4's classes)
_PYRO4_MODULE = "Pyro4.utils.flame"
#: consoles redirect the process's stdout while they run a line: one at a time
_CONSOLE_LOCK = threading.Lock()


class PickleRequiredError(errors.SecurityError, errors.SerializeError):
    """Flame refused a serializer other than pickle.

    A SecurityError (the refusal is a safety rule) and a SerializeError (what stock Pyro4 raises here),
    so code written for either catches it.
    """


def _not_on_the_wire(what: str) -> errors.SerializeError:
    return errors.SerializeError(f"{what} objects travel only with the pickle serializer (Flame is pickle-only)")


def _flame_proxy(flameserver: Flame) -> Proxy:
    """A proxy for the registered Flame object, always speaking pickle (stored in the objects sent back)."""
    daemon = flameserver._pyroDaemon  # type: ignore[attr-defined]
    proxy = Proxy(daemon.uriFor(flameserver))
    proxy._pyroSerializer = "pickle"
    return proxy


def _location(proxy: Any) -> str:
    uri = getattr(proxy, "_pyroUri", None)
    return str(getattr(uri, "location", uri))


class _RemoteMember:
    """A dotted name inside a remote module: calling it calls the function on the Flame server."""

    __slots__ = ("_flameserver", "_name")

    def __init__(self, flameserver: Any, name: str) -> None:
        self._flameserver = flameserver
        self._name = name

    def __getattr__(self, name: str) -> _RemoteMember:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _RemoteMember(self._flameserver, f"{self._name}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._flameserver.invokeModule(self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<remote function {self._name!r} at {_location(self._flameserver)}>"


@wire_class(f"{_PYRO4_MODULE}.FlameModule")
class FlameModule:
    """Client-side stand-in for a module on the Flame server: ``m.func(args)`` runs ``module.func`` there.

    Only calls are supported (no attribute values: use ``flame.evaluate("module.attr")``); dotted
    names work (``flame.module("os").path.join("a", "b")``). Instance state is exactly Pyro4's
    (``flameserver``, a proxy, and ``module``, the name), which is what travels in the pickle.
    """

    def __init__(self, flameserver: Flame, module: str) -> None:
        self.flameserver = _flame_proxy(flameserver)
        self.module = module

    def __getattr__(self, item: str) -> _RemoteMember:
        if item.startswith("__") and item.endswith("__") or item in ("flameserver", "module"):
            raise AttributeError(item)
        return _RemoteMember(self.flameserver, f"{self.module}.{item}")

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _wire_state(self) -> Any:
        raise _not_on_the_wire("FlameModule")

    @classmethod
    def _from_wire_state(cls, state: Any) -> Any:
        raise _not_on_the_wire("FlameModule")

    def __enter__(self) -> FlameModule:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flameserver._pyroRelease()

    def __repr__(self) -> str:
        return f"<pyroplug.tools.flame.FlameModule at {id(self):#x}; module '{self.module}' at {_location(self.flameserver)}>"


@wire_class(f"{_PYRO4_MODULE}.FlameBuiltin")
class FlameBuiltin:
    """Client-side stand-in for a builtin function on the Flame server: calling it calls the builtin there."""

    def __init__(self, flameserver: Flame, builtin: str) -> None:
        self.flameserver = _flame_proxy(flameserver)
        self.builtin = builtin

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.flameserver.invokeBuiltin(self.builtin, args, kwargs)

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _wire_state(self) -> Any:
        raise _not_on_the_wire("FlameBuiltin")

    @classmethod
    def _from_wire_state(cls, state: Any) -> Any:
        raise _not_on_the_wire("FlameBuiltin")

    def __enter__(self) -> FlameBuiltin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flameserver._pyroRelease()

    def __repr__(self) -> str:
        return f"<pyroplug.tools.flame.FlameBuiltin at {id(self):#x}; builtin '{self.builtin}' at {_location(self.flameserver)}>"


@wire_class(f"{_PYRO4_MODULE}.RemoteInteractiveConsole")
class RemoteInteractiveConsole:
    """Client side of a remote Python console: :meth:`interact` runs it on this terminal.

    ``remoteconsole`` is the proxy for the server's :class:`InteractiveConsole` (its only state, as in
    Pyro4). :meth:`close` (or leaving a ``with`` block) ends the session on the server.
    """

    class LineSendingConsole(code.InteractiveConsole):
        """A local console that sends every line to the remote console and shows its output."""

        def __init__(self, remoteconsole: Any) -> None:
            super().__init__(filename="<remoteconsole>")
            self.remoteconsole = remoteconsole

        def push(self, line: str, *args: Any, **kwargs: Any) -> bool:
            """Run ``line`` remotely; True when the remote console needs more input."""
            output, more = self.remoteconsole.push_and_get_output(line)
            if output:
                sys.stdout.write(output)
            return bool(more)

    def __init__(self, remoteconsoleuri: URI | str) -> None:
        self.remoteconsole = Proxy(remoteconsoleuri)
        self.remoteconsole._pyroSerializer = "pickle"

    def interact(self) -> None:
        """Run the remote console interactively on this process's stdin/stdout (Ctrl-D ends it)."""
        console = self.LineSendingConsole(self.remoteconsole)
        console.interact(banner=self.remoteconsole.get_banner(), exitmsg="(Remote session ended)")

    def close(self) -> None:
        """End the remote session and release the connection."""
        self.remoteconsole.terminate()
        self.remoteconsole._pyroRelease()

    def terminate(self) -> None:
        """Same as :meth:`close`."""
        self.close()

    def _wire_state(self) -> Any:
        raise _not_on_the_wire("RemoteInteractiveConsole")

    @classmethod
    def _from_wire_state(cls, state: Any) -> Any:
        raise _not_on_the_wire("RemoteInteractiveConsole")

    def __enter__(self) -> RemoteInteractiveConsole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<pyroplug.tools.flame.RemoteInteractiveConsole at {id(self):#x}; for {_location(self.remoteconsole)}>"


class _CapturingConsole(code.InteractiveConsole):
    """code.InteractiveConsole whose error output (tracebacks) goes to stdout, so it is captured too."""

    def write(self, data: str) -> None:
        sys.stdout.write(data)


@expose
class InteractiveConsole:
    """Server side of a remote console (registered by :meth:`Flame.console`); exposes what Pyro4's does."""

    def __init__(self, filename: str = "<remoteconsole>", namespace: dict[str, Any] | None = None) -> None:
        self._console = _CapturingConsole(namespace, filename)
        self.banner = ""

    def push_and_get_output(self, line: str) -> tuple[str, bool]:
        """Push one line; return (its output, whether more input is needed)."""
        with _CONSOLE_LOCK:
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                more = self._console.push(line)
            return buffer.getvalue(), bool(more)

    def get_banner(self) -> str:
        """The banner shown when the session starts."""
        return self.banner

    def write(self, data: str) -> None:
        """Write to the server's stdout."""
        sys.stdout.write(data)

    def terminate(self) -> None:
        """End the session: unregister from the daemon and drop pending input."""
        daemon = getattr(self, "_pyroDaemon", None)
        if daemon is not None:
            daemon.unregister(self)
        self._console.resetbuffer()


def _exec(source: str, filename: str, namespace: dict[str, Any]) -> None:
    exec(compile(source.rstrip() + "\n", filename, "exec"), namespace)  # noqa: S102 - Flame's purpose


def _namespace() -> dict[str, Any]:
    return {"__name__": "__flame__", "__builtins__": builtins, "sys": sys, "os": os, "types": types,
            "code": code, "stat": stat, "importlib": importlib, "builtins": builtins}


@expose
class Flame:
    """The Flame server object (registered as ``Pyro.Flame`` by :func:`start`).

    WARNING: every method here runs arbitrary code or touches arbitrary files for whoever calls it:
    anyone who can connect can run any code on this machine. ``config`` is the configuration of the
    daemon it serves (default: the global one); it must accept pickle only.
    """

    def __init__(self, config: Config | None = None) -> None:
        cfg = config or global_config
        if accepted_set(cfg.SERIALIZERS_ACCEPTED) != {"pickle"}:
            raise PickleRequiredError("Flame requires the pickle serializer exclusively (SERIALIZERS_ACCEPTED={'pickle'})")
        self._namespace = _namespace()

    def module(self, name: str) -> FlameModule:
        """Import module ``name`` on the server; return a FlameModule to call its functions remotely."""
        importlib.import_module(name)
        return FlameModule(self, name)

    def builtin(self, name: str) -> FlameBuiltin:
        """A FlameBuiltin calling the server's builtin ``name``."""
        return FlameBuiltin(self, name)

    def execute(self, code: str) -> None:
        """Execute Python statements on the server (in this Flame's namespace)."""
        _exec(code, "<remote-code>", self._namespace)

    def evaluate(self, expression: str) -> Any:
        """Evaluate a Python expression on the server (in this Flame's namespace) and return its value."""
        return eval(expression, self._namespace)  # noqa: S307 - Flame's purpose

    def sendmodule(self, modulename: str, modulesource: str) -> None:
        """Create (or re-run) module ``modulename`` on the server from source; ``import`` it to use it."""
        createModule(modulename, modulesource)

    def getmodule(self, modulename: str) -> str:
        """The source code of a module on the server."""
        return inspect.getsource(importlib.import_module(modulename))

    def sendfile(self, filename: str, filedata: bytes) -> None:
        """Write ``filedata`` to ``filename`` on the server (readable and writable by its owner only)."""
        fd = os.open(filename, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "wb") as target:
            with contextlib.suppress(OSError, AttributeError):  # an existing file keeps its mode otherwise
                os.fchmod(target.fileno(), stat.S_IRUSR | stat.S_IWUSR)
            target.write(filedata)

    def getfile(self, filename: str) -> bytes:
        """The contents of any file the server can read."""
        with open(filename, "rb") as source:
            return source.read()

    def console(self) -> RemoteInteractiveConsole:
        """Start a remote interactive console session; returns its client-side object."""
        console = InteractiveConsole(filename="<remoteconsole>")
        uri = self._pyroDaemon.register(console)  # type: ignore[attr-defined]
        console.banner = f"Python {sys.version} on {sys.platform}\n(Remote console on {uri.location})"
        return RemoteInteractiveConsole(uri)

    def invokeBuiltin(self, builtin: str, args: Any, kwargs: Any) -> Any:  # noqa: N802 - Pyro4 API
        """Call builtin ``builtin`` with args and kwargs (used by FlameBuiltin)."""
        return getattr(builtins, builtin)(*args, **(kwargs or {}))

    def invokeModule(self, dottedname: str, args: Any, kwargs: Any) -> Any:  # noqa: N802 - Pyro4 API
        """Call ``module.attr[.attr...]`` with args and kwargs (used by FlameModule); no privacy checks."""
        modulename, _, path = dottedname.partition(".")
        target: Any = sys.modules[modulename]
        for attr in path.split("."):
            target = getattr(target, attr)
        return target(*args, **(kwargs or {}))


def createModule(name: str, source: str, filename: str | None = None, namespace: dict[str, Any] | None = None) -> types.ModuleType:  # noqa: N802 - Pyro4 API
    """Create module ``name`` (dotted names build the package chain) from ``source`` and return it.

    Existing modules along the chain are reused, so sending a module again re-runs the new source in it.
    The module is put in ``sys.modules``; with ``namespace`` (a dict such as ``globals()``) its top-level
    package is bound there too. The source is kept in :mod:`linecache` under ``filename`` (default
    ``<flame-module NAME>``) so tracebacks and :func:`inspect.getsource` show it.
    """
    filename = filename or f"<flame-module {name}>"
    module: types.ModuleType | None = None
    path = ""
    for component in name.split("."):
        path = f"{path}.{component}" if path else component
        existing = sys.modules.get(path)
        if existing is None:
            existing = types.ModuleType(path)
            existing.__file__ = filename if path == name else f"<flame-package {path}>"
            sys.modules[path] = existing
            if module is not None:
                setattr(module, component, existing)
        module = existing
    assert module is not None
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    _exec(source, filename, module.__dict__)
    if namespace is not None:
        top = name.partition(".")[0]
        namespace[top] = sys.modules[top]
    return module


def _enabled(cfg: Config | None) -> bool:
    return bool(global_config.FLAME_ENABLED or (cfg is not None and cfg.FLAME_ENABLED))


def start(daemon: Any) -> URI:
    """Register a Flame server as ``Pyro.Flame`` in ``daemon`` and return its URI.

    WARNING: anyone who can connect to the daemon can then run any code on this machine. Refuses
    (SecurityError) unless FLAME_ENABLED is set (in the global config or the daemon's) and the daemon
    accepts the pickle serializer and nothing else (:class:`PickleRequiredError`).
    """
    cfg: Config | None = getattr(daemon, "config", None)
    if not _enabled(cfg):
        raise errors.SecurityError(
            "Flame is disabled in the server configuration: set FLAME_ENABLED (PYRO_FLAME_ENABLED=true) to "
            "allow it, knowing that anyone who can connect can run any code on this machine")
    accepted = accepted_set((cfg or global_config).SERIALIZERS_ACCEPTED)
    if accepted != {"pickle"}:
        raise PickleRequiredError(
            f"Flame requires the pickle serializer exclusively; the daemon accepts {sorted(accepted)} "
            "(set SERIALIZERS_ACCEPTED={'pickle'} / PYRO_SERIALIZERS_ACCEPTED=pickle)")
    return daemon.register(Flame(cfg), FLAME_NAME)  # type: ignore[no-any-return]


class _FlameProxy(Proxy):
    """The proxy :func:`connect` returns: module, builtin and console objects it receives get its HMAC key.

    Their proxies are made on the server, which never puts a key in them (nor should it: the pickle
    travels unencrypted), so with stock Pyro4 they cannot reach a daemon that requires a key.
    """

    def _pyroInvoke(self, methodname: str, vargs: Any, kwargs: Any, flags: int = 0, objectId: str | None = None) -> Any:  # noqa: N802, N803
        result = super()._pyroInvoke(methodname, vargs, kwargs, flags, objectId)
        if self._hmac and isinstance(result, (FlameModule, FlameBuiltin, RemoteInteractiveConsole)):
            inner = result.remoteconsole if isinstance(result, RemoteInteractiveConsole) else result.flameserver
            if isinstance(inner, Proxy) and not inner._pyroHmacKey:
                inner._pyroHmacKey = self._hmac
        return result


def connect(location: str, hmac_key: bytes | str | None = None) -> Proxy:
    """A bound proxy for the Flame server at ``location`` (``host:port`` or ``./u:socketpath``).

    The client serializer (``SERIALIZER``, PYRO_SERIALIZER) must be pickle, else PickleRequiredError.
    With ``hmac_key``, the module, builtin and console objects the server returns use that key too.
    """
    if global_config.SERIALIZER != "pickle":
        raise PickleRequiredError(
            f"Flame requires the pickle serializer (SERIALIZER is {global_config.SERIALIZER!r}; set "
            "SERIALIZER='pickle' / PYRO_SERIALIZER=pickle)")
    proxy = _FlameProxy(f"PYRO:{FLAME_NAME}@{location}")
    if hmac_key:
        proxy._pyroHmacKey = hmac_key
    proxy._pyroBind()
    return proxy
