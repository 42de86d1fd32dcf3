"""The `voicefleet` command. Each subcommand lives in its own module with a ``register(subparsers)``
that adds its parser and sets ``func`` (returns the exit code); add a module to SUBCOMMANDS to add one.

A command line that names a subcommand imports only that subcommand's module: each image installs one
role's dependencies (the knowledge image has no audio stack, gRPC or WebRTC, which `pod` and `call`
import), and the knowledge server does not pay for the agent runtime's imports at start."""

from __future__ import annotations

import argparse
import importlib
import sys

# The subcommand's name -> its module.
SUBCOMMANDS = {
    "pod": "agent_pod.cli.pod",
    "call": "agent_pod.cli.call",
    "drain": "agent_pod.cli.drain",
    "keys": "agent_pod.cli.keys",
    "eval": "agent_pod.cli.eval",
    "memory": "agent_pod.cli.memory",
    "audit": "agent_pod.cli.audit",
    "knowledge": "agent_pod.cli.knowledge",
}


def commands_for(argv: list[str]) -> list[str]:
    """The subcommands whose modules to import for ``argv``: the one it names, or all (top-level help,
    or no or an unknown subcommand, which argparse then lists)."""
    if argv and argv[0] in SUBCOMMANDS:
        return [argv[0]]
    return list(SUBCOMMANDS)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``; without it, every subcommand's."""
    parser = argparse.ArgumentParser(prog="voicefleet", description="voicefleet agent pods and callers")
    subparsers = parser.add_subparsers(dest="command", required=True)
    commands = commands_for(argv or [])
    for command in commands:
        try:
            module = importlib.import_module(SUBCOMMANDS[command])
        except ModuleNotFoundError as exc:
            if len(commands) == 1:
                raise
            # Listing every subcommand in an image without this one's extra: say so, not a traceback.
            subparsers.add_parser(command, help=f"(not in this installation: no module {exc.name})")
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
