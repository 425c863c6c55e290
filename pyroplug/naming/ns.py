"""``pyroplug-ns``: run a name server (Pyro4's ``pyro4-ns`` options); also ``python -m pyroplug.naming``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from pyroplug.core.errors import PluginError, PyroError
from pyroplug.naming.server import DEFAULT_SERVERTYPE, NameServerDaemon, startNSloop
from pyroplug.tools.cli import EXIT_OK, EXIT_USAGE, add_key_option, error, hmac_key

__all__ = ["main", "make_parser"]


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pyroplug-ns``."""
    parser = argparse.ArgumentParser(
        prog="pyroplug-ns",
        description="Run a pyroplug name server (Pyro4 4.82 compatible: stock Pyro4 clients can use it).",
        epilog="The storage is 'memory' (default), 'sql:FILE' (SQLite, keeps names and metadata across "
               "restarts), 'dbm:FILE' (no metadata) or a storage plugin's scheme. Exit codes: 0 after a "
               "clean shutdown (Ctrl-C or SIGTERM), 1 when the server cannot start, 2 for usage errors.",
    )
    parser.add_argument("-n", "--host", help="hostname to bind the server on (default: the HOST config item)")
    parser.add_argument("-p", "--port", type=int, help="port to bind the server on (default: NS_PORT, 0=random)")
    parser.add_argument("-u", "--unixsocket", help="unix domain socket name to bind the server on")
    parser.add_argument("-s", "--storage", default="memory",
                        help="storage system to use: memory, dbm:FILE, sql:FILE (default: %(default)s)")
    parser.add_argument("--bchost", help='hostname to bind the broadcast server on (default: "")')
    parser.add_argument("--bcport", type=int, help="port to bind the broadcast server on (default: NS_BCPORT, 0=random)")
    parser.add_argument("--nathost", help="external hostname in case of NAT")
    parser.add_argument("--natport", type=int, help="external port in case of NAT")
    parser.add_argument("--servertype", default=os.environ.get("PYRO_SERVERTYPE") or DEFAULT_SERVERTYPE,
                        help="server type to serve clients with (default: PYRO_SERVERTYPE if set, else %(default)s)")
    parser.add_argument("-x", "--nobc", dest="enablebc", action="store_false", default=True,
                        help="don't start a broadcast server")
    add_key_option(parser)
    return parser


def main(args: list[str] | None = None) -> int:
    """Entry point of ``pyroplug-ns``; returns the exit code."""
    parser = make_parser()
    options = parser.parse_args(args)
    key = hmac_key(parser, options.key)

    def report(line: str) -> None:
        print(line, flush=True)

    def ready(_uri: Any, daemon: NameServerDaemon, _bc: Any) -> None:
        def stop(_signum: int, _frame: Any) -> None:
            threading.Thread(target=daemon.shutdown, name="pyroplug-ns-stop", daemon=True).start()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, stop)

    try:
        startNSloop(options.host, options.port, enableBroadcast=options.enablebc, bchost=options.bchost,
                    bcport=options.bcport, unixsocket=options.unixsocket, nathost=options.nathost,
                    natport=options.natport, storage=options.storage, hmac=key, servertype=options.servertype,
                    report=report, ready=ready)
    except ValueError as exc:  # an invalid storage string, NAT options or NS_AUTOCLEAN value
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"{parser.prog}: error: {exc}\n")
        return EXIT_USAGE
    except PluginError as exc:  # an unknown server type
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"{parser.prog}: error: {exc}\n")
        return EXIT_USAGE
    except (PyroError, OSError) as exc:
        return error(exc, "Error: cannot run the name server")
    except KeyboardInterrupt:
        print("NS shut down.", flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
