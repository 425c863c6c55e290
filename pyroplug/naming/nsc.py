"""``pyroplug-nsc``: name-server control (Pyro4's ``pyro4-nsc`` commands); also ``python -m pyroplug.naming.nsc``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from pyroplug.core.errors import PyroError
from pyroplug.core.nsclient import locateNS
from pyroplug.tools.cli import EXIT_OK, add_key_option, error, hmac_key

__all__ = ["COMMANDS", "main", "make_parser"]

#: command -> (minimum arguments, maximum arguments or None, usage of the arguments)
COMMANDS: dict[str, tuple[int, int | None, str]] = {
    "ping": (0, 0, ""),
    "list": (0, 1, "[prefix]"),
    "listmatching": (1, 1, "regex"),
    "listmeta_all": (1, None, "metadata [metadata...]"),
    "listmeta_any": (1, None, "metadata [metadata...]"),
    "lookup": (1, 1, "name"),
    "register": (2, 2, "name uri"),
    "remove": (1, 1, "name"),
    "removematching": (1, 1, "regex"),
    "setmeta": (1, None, "name [metadata...]"),
}


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pyroplug-nsc``."""
    lines = "\n".join(f"  {name} {usage}".rstrip() for name, (_lo, _hi, usage) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="pyroplug-nsc",
        usage="%(prog)s [options] command [arguments]",
        description="Control a pyroplug or Pyro4 name server.",
        epilog=f"commands:\n{lines}\n\nExit codes: 0 ok, 1 naming error or communication failure, 2 usage error.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-n", "--host", help="hostname of the NS (default: locate it)")
    parser.add_argument("-p", "--port", type=int, help="port of the NS (or the broadcast port if no host is given)")
    parser.add_argument("-u", "--unixsocket", help="unix domain socket name of the NS")
    parser.add_argument("-v", "--verbose", action="store_true", help="verbose output")
    parser.add_argument("-y", "--yes", action="store_true", help="don't ask for confirmation (removematching)")
    add_key_option(parser)
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="command", help="one of the commands below")
    parser.add_argument("arguments", nargs="*", help="the command's arguments")
    return parser


def _print_list(result: dict[str, Any], title: str = "") -> None:
    print(f"--------START LIST {title}".rstrip())
    for name, (uri, metadata) in sorted(result.items()):
        print(f"{name} --> {uri}")
        if metadata:
            print(f"    metadata: {sorted(metadata)}")
    print(f"--------END LIST {title}".rstrip())


def handle_command(nameserver: Any, command: str, args: list[str], assume_yes: bool = False) -> None:
    """Run one command against a name-server proxy, printing its result."""

    def ping() -> None:
        nameserver.ping()
        print("Name server ping ok.")

    def list_() -> None:
        if args:
            _print_list(nameserver.list(prefix=args[0], return_metadata=True), f"- prefix '{args[0]}'")
        else:
            _print_list(nameserver.list(return_metadata=True))

    def listmatching() -> None:
        _print_list(nameserver.list(regex=args[0], return_metadata=True), f"- regex '{args[0]}'")

    def listmeta_all() -> None:
        _print_list(nameserver.list(metadata_all=set(args), return_metadata=True), "- searched by metadata")

    def listmeta_any() -> None:
        _print_list(nameserver.list(metadata_any=set(args), return_metadata=True), "- searched by metadata")

    def lookup() -> None:
        uri, metadata = nameserver.lookup(args[0], return_metadata=True)
        print(uri)
        if metadata:
            print(f"metadata: {sorted(metadata)}")

    def register() -> None:
        nameserver.register(args[0], args[1], safe=True)
        print(f"Registered {args[0]}")

    def remove() -> None:
        if nameserver.remove(args[0]) > 0:
            print(f"Removed {args[0]}")
        else:
            print("Nothing removed")

    def removematching() -> None:
        if not assume_yes:
            try:
                sure = input("Potentially removing lots of items from the Name server. Are you sure (y/n)? ").strip()
            except EOFError:
                sure = ""
            if sure not in ("y", "Y"):
                print("Nothing removed")
                return
        print(f"{nameserver.remove(regex=args[0])} items removed.")

    def setmeta() -> None:
        metadata = set(args[1:])
        nameserver.set_metadata(args[0], metadata)
        print("Metadata updated" if metadata else "Metadata cleared")

    commands: dict[str, Callable[[], None]] = {
        "ping": ping, "list": list_, "listmatching": listmatching, "listmeta_all": listmeta_all,
        "listmeta_any": listmeta_any, "lookup": lookup, "register": register, "remove": remove,
        "removematching": removematching, "setmeta": setmeta,
    }
    commands[command]()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``pyroplug-nsc``; returns the exit code."""
    parser = make_parser()
    options = parser.parse_intermixed_args(args)
    low, high, usage = COMMANDS[options.command]
    count = len(options.arguments)
    if count < low or (high is not None and count > high):
        parser.error(f"{options.command} takes: {options.command} {usage}".rstrip())
    key = hmac_key(parser, options.key)
    host = options.host
    if options.unixsocket:
        host = "./u:" + options.unixsocket
    if options.verbose:
        print("Locating name server...")
    try:
        nameserver = locateNS(host, options.port, hmac_key=key)
    except PyroError as exc:
        return error(exc)
    if options.verbose:
        print(f"Name server found: {nameserver._pyroUri}")
    try:
        with nameserver:
            handle_command(nameserver, options.command, options.arguments, options.yes)
    except Exception as exc:  # remote errors arrive as their own types (NamingError, TypeError, ...)
        return error(exc)
    if options.verbose:
        print("Done.")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
