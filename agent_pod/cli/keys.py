"""`voicefleet keys new`: mint an API key and the keyring entry that admits it.

The key is printed once and never stored; the keyring (the JSON a VoiceAgent's
``auth.apiKeysSecretRef`` points to) keeps only its id, tenant, scopes and SHA-256:

    voicefleet keys new --tenant acme --keyring keyring.json
    kubectl create secret generic receptionist-api-keys --from-file=keyring.json \\
        --dry-run=client -o yaml | kubectl apply -f -
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..config import SCOPES
from ..sessions.auth import Keyring, new_api_key


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = subparsers.add_parser("keys", help="API keys of the session API")
    actions = keys.add_subparsers(dest="action", required=True)
    p = actions.add_parser("new", help="mint an API key; print it and add its hashed entry to a keyring")
    p.add_argument("--tenant", required=True, help="tenant the key acts for (quotas are per tenant)")
    p.add_argument(
        "--scope",
        action="append",
        choices=SCOPES,
        help="scope to grant (repeatable; default: sessions:create and sessions:resume)",
    )
    p.add_argument("--days", type=float, default=0, help="expire after this many days (default: never)")
    p.add_argument("--keyring", type=Path, help="keyring JSON file to add the entry to (created if missing)")
    p.set_defaults(func=run_new)


def run_new(args: argparse.Namespace) -> int:
    scopes = args.scope or ["sessions:create", "sessions:resume"]
    expires = int(time.time() + args.days * 86400) if args.days else 0
    try:
        key, entry = new_api_key(args.tenant, scopes, expires)
    except ValueError as exc:
        print(f"voicefleet keys new: {exc}", file=sys.stderr)
        return 2
    if args.keyring:
        keyring = (
            Keyring.model_validate_json(args.keyring.read_bytes()) if args.keyring.exists() else Keyring()
        )
        keyring.keys.append(entry)
        args.keyring.write_text(json.dumps(keyring.dump(), indent=2) + "\n")
        print(f"added key {entry.id} for tenant {entry.tenant} to {args.keyring}", file=sys.stderr)
    else:
        print(json.dumps(entry.dump()), file=sys.stderr)
    print(key)
    return 0
