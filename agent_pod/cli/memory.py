"""`voicefleet memory delete`: forget what an agent remembers of a caller across calls.

Sends the session API's POST /v1/memory/delete to any pod of the agent (the memory lives in Redis, so
every pod can delete it). The credential needs the ``memory:delete`` scope when auth is required.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("memory", help="caller memory kept across calls (memory.persistence)")
    actions = p.add_subparsers(dest="memory_command", required=True)
    delete = actions.add_parser("delete", help="delete the memory an agent keeps of one caller")
    delete.add_argument("--url", required=True, help="a pod's HTTP base URL, e.g. http://10.0.0.7:8080")
    delete.add_argument("--caller-key", required=True, help="the caller's key (its callerKeyField value)")
    delete.add_argument(
        "--api-key",
        default=os.environ.get("VOICEFLEET_API_KEY"),
        help="API key or JWT with the memory:delete scope (default: $VOICEFLEET_API_KEY)",
    )
    delete.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the pod")
    delete.set_defaults(func=run_delete)


def run_delete(args: argparse.Namespace) -> int:
    headers = {"Content-Type": "application/json"}
    if args.api_key:
        headers["Authorization"] = f"Bearer {args.api_key}"
    request = urllib.request.Request(
        args.url.rstrip("/") + "/v1/memory/delete",
        method="POST",
        data=json.dumps({"callerKey": args.caller_key}).encode(),
        headers=headers,
    )
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            deleted = json.loads(response.read())["deleted"]
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())["error"]
            print(f"refused ({exc.code} {error['code']}): {error['message']}", file=sys.stderr)
        except (ValueError, KeyError):
            print(f"refused: HTTP {exc.code}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"request failed: {exc}", file=sys.stderr)
        return 1
    print("deleted" if deleted else "no memory kept for this caller")
    return 0
