"""Runs a session of stock ``pyro4-nsc`` commands (``Pyro4.nsc.main``) in one process, to save start-ups.

Run as ``python nsc_session.py HOST PORT '<json list of argument lists>'``; prints ``=== <command>``
before each command's own output. ``python -m Pyro4.nsc`` itself runs the same ``main`` per process.
"""

from __future__ import annotations

import json
import sys

from Pyro4 import nsc


def main() -> None:
    host, port, commands = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    for command in commands:
        print("=== " + " ".join(command), flush=True)
        try:
            nsc.main(["-n", host, "-p", port, *command])
        except SystemExit as exc:  # usage errors
            print(f"SystemExit: {exc.code}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
