"""`voicefleet drain`: the agent container's preStop hook.

Asks the pod's own HTTP server (on loopback) to start draining at once, so it
leaves placement and readiness before SIGTERM arrives; the pod keeps serving its
live sessions until they end or the drain deadline.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("drain", help="start draining the agent pod on this host (preStop hook)")
    p.add_argument("--port", type=int, default=8080, help="the pod's HTTP port (default 8080)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{args.port}/drain", method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            print(json.loads(response.read()))
            return 0
    except (urllib.error.URLError, OSError) as exc:
        # A pod that is already gone needs no drain; never fail the preStop hook over it.
        print(f"drain request failed: {exc}", file=sys.stderr)
        return 0
