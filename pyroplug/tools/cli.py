"""Helpers shared by the command-line tools: the HMAC key option, exit codes and error reporting."""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "add_key_option", "error", "hmac_key"]

#: success
EXIT_OK = 0
#: a NamingError, a communication failure, or another runtime error
EXIT_FAILURE = 1
#: bad command line (argparse's code)
EXIT_USAGE = 2


def add_key_option(parser: argparse.ArgumentParser) -> None:
    """Add Pyro4's deprecated ``-k/--key`` option."""
    parser.add_argument("-k", "--key", help="the HMAC key to use (deprecated: set the PYRO_HMAC_KEY environment variable)")


def hmac_key(parser: argparse.ArgumentParser, key: str | None) -> str | None:
    """The HMAC key from ``-k`` (with a deprecation warning) or PYRO_HMAC_KEY; a usage error for both."""
    if key:
        sys.stderr.write(
            "Warning: using -k to supply the HMAC key on the command line is a security problem and is "
            "deprecated; set the PYRO_HMAC_KEY environment variable instead\n"
        )
    env_key = os.environ.get("PYRO_HMAC_KEY")
    if env_key is not None:
        if key:
            parser.error("don't use -k and PYRO_HMAC_KEY at the same time")
        key = env_key
    return key or None


def error(exc: BaseException, prefix: str = "Error") -> int:
    """Report an error on stderr as ``Error: Type - message`` and return EXIT_FAILURE."""
    sys.stderr.write(f"{prefix}: {type(exc).__name__} - {exc}\n")
    sys.stderr.flush()
    return EXIT_FAILURE
