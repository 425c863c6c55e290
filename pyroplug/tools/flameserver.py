"""``pyroplug-flameserver``: Pyro4's ``pyro4-flameserver``, a daemon hosting a Flame server (``Pyro.Flame``).

WARNING: Flame is remote code execution by design: anyone who can connect can run any code on this
machine. The server refuses to start unless Flame is enabled explicitly (``PYRO_FLAME_ENABLED=true``);
its daemon accepts the pickle serializer only. Bind it to localhost (the default) and set an HMAC key
(``PYRO_HMAC_KEY``) whenever other users can reach the port.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from pyroplug.core.config import config as global_config
from pyroplug.core.daemon import Daemon
from pyroplug.core.errors import PyroError
from pyroplug.tools.cli import EXIT_FAILURE, EXIT_OK, add_key_option, error, hmac_key
from pyroplug.tools.flame import start

__all__ = ["main", "make_parser"]

WARNING = "anyone who can connect can run any code on this machine"


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pyroplug-flameserver`` (Pyro4's options)."""
    parser = argparse.ArgumentParser(
        prog="pyroplug-flameserver",
        description=f"Run a Pyro Flame server (object 'Pyro.Flame'). DANGER: Flame is remote code execution by "
                    f"design: {WARNING}, with this process's privileges, and read or write any of its files. "
                    "It only starts when PYRO_FLAME_ENABLED=true is set; it accepts the pickle serializer only.",
        epilog="Clients: pyroplug.tools.flame.connect('HOST:PORT') (or Pyro4.utils.flame.connect) with "
               "PYRO_SERIALIZER=pickle. Exit codes: 0 after Ctrl-C or SIGTERM, 1 when it cannot (or may not) "
               "start, 2 for usage errors.",
    )
    parser.add_argument("-H", "--host", default="localhost", help="hostname to bind the server on (default: %(default)s)")
    parser.add_argument("-p", "--port", type=int, default=0, help="port to bind the server on (default: random)")
    parser.add_argument("-u", "--unixsocket", help="unix domain socket name to bind the server on")
    parser.add_argument("-q", "--quiet", action="store_true", help="don't output anything")
    add_key_option(parser)
    return parser


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(args: list[str] | None = None, returnWithoutLooping: bool = False) -> Any:  # noqa: N803 - Pyro4 API
    """Entry point of ``pyroplug-flameserver``; returns the exit code (or (daemon, uri) for tests)."""
    parser = make_parser()
    options = parser.parse_args(args)
    key = hmac_key(parser, options.key)
    say = (lambda _text: None) if options.quiet else (lambda text: print(text, flush=True))
    if not global_config.FLAME_ENABLED:
        sys.stderr.write(f"Error: Flame is disabled. It is remote code execution: {WARNING}. To allow it "
                         "anyway, set the environment variable PYRO_FLAME_ENABLED=true.\n")
        return EXIT_FAILURE
    say("Starting Pyro Flame server.")
    say(f"Warning: Flame is enabled: {WARNING}.")
    if not key:
        say("Warning: HMAC key not set. Anyone can connect to this server!")
    cfg = global_config.copy()
    cfg.SERIALIZERS_ACCEPTED = {"pickle"}  # Flame works with pickle only, and refuses every other serializer
    try:
        daemon = Daemon(host=options.host, port=options.port, unixsocket=options.unixsocket, config=cfg)
    except (PyroError, OSError, ValueError) as exc:
        return error(exc, "Error: cannot start the Flame server")
    if key:
        daemon._pyroHmacKey = key
    try:
        uri = start(daemon)
    except PyroError as exc:
        daemon.close()
        return error(exc, "Error: cannot start the Flame server")
    say(f"server uri: {uri}")
    say("server is running.")
    if returnWithoutLooping:
        return daemon, uri
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        daemon.requestLoop()
    except KeyboardInterrupt:
        pass
    finally:
        daemon.close()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
