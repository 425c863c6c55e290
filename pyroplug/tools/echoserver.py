"""``pyroplug-echoserver``: Pyro4's test echo server (object ``test.echoserver``), a handy interop target."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from pyroplug.core.config import config as global_config
from pyroplug.core.daemon import Daemon
from pyroplug.core.errors import PyroError
from pyroplug.core.expose import expose, oneway
from pyroplug.core.nsclient import locateNS
from pyroplug.core.uri import URI
from pyroplug.tools.cli import EXIT_OK, add_key_option, error, hmac_key

__all__ = ["OBJECT_NAME", "EchoServer", "NameServerThread", "main", "make_parser"]

#: the object id (and name-server name) of the echo server object
OBJECT_NAME = "test.echoserver"


def _say(text: str) -> None:
    print(f"{time.asctime()} - {text}", flush=True)


@expose
class EchoServer:
    """The echo object: echoes, raises, streams and sleeps on request. ``verbose`` makes it log calls."""

    _verbose = False
    _must_shutdown = False

    def echo(self, message: Any) -> Any:
        """Return the message."""
        if self._verbose:
            _say(f"echo: {message!r}")
        return message

    def error(self) -> None:
        """Raise a ValueError."""
        if self._verbose:
            _say("error: generating exception")
        raise ValueError("expected error from echoserver error() method")

    def error_with_text(self) -> None:
        """Raise a ValueError with a message."""
        if self._verbose:
            _say("error: generating exception")
        raise ValueError("the message of the error")

    @oneway
    def oneway_echo(self, message: Any) -> Any:
        """Like echo, but oneway: the client does not wait (and gets no result)."""
        if self._verbose:
            _say(f"oneway_echo: {message!r}")
        return "bogus return value"

    def slow(self) -> str:
        """Return a message after 5 seconds."""
        if self._verbose:
            _say("slow: waiting a bit...")
        time.sleep(5)
        if self._verbose:
            _say("slow: returning result")
        return "Finally, an answer!"

    def generator(self) -> Iterator[str]:
        """Yield three strings (an item stream)."""
        yield "one"
        yield "two"
        yield "three"

    def nan(self) -> float:
        """Not a number."""
        return float("nan")

    def inf(self) -> float:
        """Infinity."""
        return float("inf")

    @oneway
    def oneway_slow(self) -> str:
        """Sleep 5 seconds; oneway, so the client does not wait."""
        if self._verbose:
            _say("oneway_slow: waiting a bit...")
        time.sleep(5)
        if self._verbose:
            _say("oneway_slow: returning result")
        return "bogus return value"

    def _private(self) -> str:
        """Not remotely accessible."""
        return "should not be allowed"

    def __private(self) -> str:
        """Not remotely accessible."""
        return "should not be allowed"

    def __dunder__(self) -> str:
        """Remotely accessible: dunder names are not private."""
        return "should be allowed (dunder)"

    def shutdown(self) -> None:
        """Stop the echo server (its daemon shuts down right after this call returns)."""
        if self._verbose:
            _say("shutting down")
        self._must_shutdown = True
        daemon = getattr(self, "_pyroDaemon", None)
        if daemon is not None:
            threading.Timer(0.1, daemon.shutdown).start()

    @property
    def verbose(self) -> bool:
        """Whether calls are logged to stdout."""
        return self._verbose

    @verbose.setter
    def verbose(self, onoff: bool) -> None:
        self._verbose = bool(onoff)


class NameServerThread(threading.Thread):
    """A name server (with its broadcast responder, if any) in a daemon thread, for ``-N``."""

    def __init__(self, hostname: str, hmac: bytes | str | None = None) -> None:
        super().__init__(name="echoserver-nameserver", daemon=True)
        self.hostname = hostname
        self.hmac = hmac
        self.started = threading.Event()
        self.failure: BaseException | None = None
        self.uri: URI | None = None
        self.ns_daemon: Any = None
        self.bc_server: Any = None

    def run(self) -> None:
        from pyroplug.naming.server import startNS

        try:
            self.uri, self.ns_daemon, self.bc_server = startNS(self.hostname, hmac=self.hmac)
        except BaseException as exc:  # reported by the starting thread
            self.failure = exc
            self.started.set()
            return
        self.started.set()
        if self.bc_server is not None:
            self.bc_server.runInThread()
        self.ns_daemon.requestLoop()


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pyroplug-echoserver``."""
    parser = argparse.ArgumentParser(
        prog="pyroplug-echoserver",
        description=f"Run Pyro4's test echo server: object '{OBJECT_NAME}' with echo, error, generator, slow, ...",
        epilog="Exit codes: 0 after shutdown() was called remotely, 1 when it cannot start, 2 for usage errors.",
    )
    parser.add_argument("-H", "--host", default="localhost", help="hostname to bind the server on (default: %(default)s)")
    parser.add_argument("-p", "--port", type=int, default=0, help="port to bind the server on (default: random)")
    parser.add_argument("-u", "--unixsocket", help="unix domain socket name to bind the server on")
    parser.add_argument("-n", "--naming", action="store_true", help="register the object in the name server")
    parser.add_argument("-N", "--nameserver", action="store_true", help="also start a name server (implies -n)")
    parser.add_argument("-v", "--verbose", action="store_true", help="verbose output")
    parser.add_argument("-q", "--quiet", action="store_true", help="don't output anything")
    add_key_option(parser)
    return parser


def main(args: list[str] | None = None, returnWithoutLooping: bool = False) -> Any:  # noqa: N803 - Pyro4 API
    """Entry point of ``pyroplug-echoserver``; returns the exit code (or (daemon, echo, uri) for tests)."""
    parser = make_parser()
    options = parser.parse_args(args)
    key = hmac_key(parser, options.key)
    if options.verbose:
        options.quiet = False
    say = (lambda _text: None) if options.quiet else (lambda text: print(text, flush=True))
    say("Starting pyroplug's built-in test echo server.")
    if not key:
        say("Warning: HMAC key not set. Anyone can connect to this server!")
    cfg = global_config.copy()
    cfg.SERVERTYPE = "multiplex"
    nameserver = None
    try:
        if options.nameserver:
            options.naming = True
            nameserver = NameServerThread(options.host, hmac=key)
            nameserver.start()
            nameserver.started.wait()
            if nameserver.failure is not None:
                raise nameserver.failure
        daemon = Daemon(host=options.host, port=options.port, unixsocket=options.unixsocket, config=cfg)
    except (PyroError, OSError, ValueError) as exc:
        return error(exc, "Error: cannot start the echo server")
    if key:
        daemon._pyroHmacKey = key
    echo = EchoServer()
    echo._verbose = options.verbose
    uri = daemon.register(echo, OBJECT_NAME)
    try:
        if options.naming:
            host, port = None, None
            if nameserver is not None and nameserver.uri is not None:
                host, port = nameserver.uri.host, nameserver.uri.port
            with locateNS(host, port, hmac_key=key) as ns:
                ns.register(OBJECT_NAME, uri)
                if options.verbose:
                    say(f"using name server at {ns._pyroUri}")
                    if nameserver is not None:
                        bc = nameserver.bc_server
                        say(f"broadcast server running at {bc.locationStr}" if bc else "not using a broadcast server")
        elif options.verbose:
            say("not using a name server.")
    except PyroError as exc:
        daemon.close()
        return error(exc, "Error: cannot register in the name server")
    say(f"object name: {OBJECT_NAME}")
    say(f"echo uri: {uri}")
    say("echoserver running.")
    if returnWithoutLooping:
        return daemon, echo, uri
    try:
        daemon.requestLoop(loopCondition=lambda: not echo._must_shutdown)
    except KeyboardInterrupt:
        pass
    finally:
        daemon.close()
        if nameserver is not None and nameserver.ns_daemon is not None:
            nameserver.ns_daemon.shutdown()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
