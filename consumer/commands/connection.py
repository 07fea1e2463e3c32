"""The hub connection string of ``send`` and ``record``: given on the command line, or read
from an environment variable (kept out of the shell history and ``ps``), and masked in
whatever those commands print."""

from __future__ import annotations

import argparse

from consumer.config import environment_secret
from consumer.errors import ConfigError


def add_options(parser: argparse.ArgumentParser) -> None:
    """``--connection-string`` or ``--connection-string-env NAME`` (one of them is
    required), and ``--eventhub`` for a string without the hub's name."""
    secret = parser.add_mutually_exclusive_group(required=True)
    secret.add_argument(
        "--connection-string",
        metavar="STRING",
        help="the hub's connection string (visible in ps and the shell history; "
        "prefer --connection-string-env)",
    )
    secret.add_argument(
        "--connection-string-env",
        metavar="NAME",
        help="read the connection string from this environment variable",
    )
    parser.add_argument(
        "--eventhub", metavar="NAME", help="hub name, if the connection string has no EntityPath"
    )


def connection_string(args: argparse.Namespace) -> str:
    """The connection string the options give.

    Raises:
        ConfigError: the variable is not set, or the string is empty; names the option,
            never the value.
    """
    if args.connection_string_env is not None:
        return environment_secret("--connection-string-env", args.connection_string_env)
    if not args.connection_string:
        raise ConfigError("--connection-string: empty")
    return str(args.connection_string)


def option(args: argparse.Namespace) -> str:
    """The option the connection string came from, for error messages."""
    if args.connection_string_env is None:
        return "--connection-string"
    return f"--connection-string-env {args.connection_string_env}"


def scrub(text: str, connection_string: str) -> str:
    """``text`` with the connection string, and the key or signature in it, masked."""
    if not connection_string:
        return text
    secrets = [connection_string]
    for part in connection_string.split(";"):
        name, _, value = part.partition("=")
        if name.strip().lower() in ("sharedaccesskey", "sharedaccesssignature") and value:
            secrets.append(value)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
