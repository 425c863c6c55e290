"""serveSimple: register a dict of objects (optionally in the name server) and run the request loop."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyroplug.core.daemon import Daemon

__all__ = ["serve_simple"]


def serve_simple(
    objects: dict[Any, str | None],
    host: str | None = None,
    port: int = 0,
    daemon: Daemon | None = None,
    ns: bool = True,
    verbose: bool = True,
) -> None:
    """The body of ``Daemon.serveSimple`` (see there)."""
    from pyroplug.core.daemon import Daemon

    if daemon is None:
        daemon = Daemon(host, port)
    with daemon:
        nameserver = None
        if ns:
            from pyroplug.core.nsclient import locateNS

            nameserver = locateNS()
        for obj, name in objects.items():
            if ns:
                localname = None
            else:
                localname = name
            uri = daemon.register(obj, localname)
            if verbose:
                sys.stdout.write(f"Object {obj!r}:\n    uri = {uri}\n")
            if name and nameserver is not None:
                nameserver.register(name, uri)
                if verbose:
                    sys.stdout.write(f"    name = {name}\n")
        if nameserver is not None:
            nameserver._pyroRelease()
        if verbose:
            sys.stdout.write("Pyro daemon running.\n")
            sys.stdout.flush()
        daemon.requestLoop()
