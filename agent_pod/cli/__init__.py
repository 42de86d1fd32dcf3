"""The `voicefleet` command. Each subcommand lives in its own module with a ``register(subparsers)``
that adds its parser and sets ``func`` (returns the exit code); add a module to SUBCOMMANDS to add one."""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = (
    "agent_pod.cli.pod",
    "agent_pod.cli.call",
    "agent_pod.cli.drain",
    "agent_pod.cli.keys",
    "agent_pod.cli.eval",
    "agent_pod.cli.memory",
    "agent_pod.cli.audit",
    "agent_pod.cli.knowledge",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicefleet", description="voicefleet agent pods and callers")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
