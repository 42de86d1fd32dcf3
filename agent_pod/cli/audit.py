"""`voicefleet audit verify CALL` and `voicefleet audit export CALL`: check and read a call's audit logs.

    voicefleet audit verify CALL --dir /var/lib/voicefleet/records/audit --key audit-public.pem
    voicefleet audit export CALL --dir ... [--json] [--raw --key audit-key]
    voicefleet audit public-key --key audit-key      # the PEM public key to hand to auditors

verify exits 1 naming the first bad seq when anything was changed, removed, reordered or cut off, or
the recording does not match its entry; export prints the transcript with its offsets into the
recording (the chain is checked, the signature only by verify). See docs/audit.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..records.audit_entries import CallEnded, CallStarted, Entry, RecordingEntry, TurnEntry
from ..records.audit_keys import AuditKeyError, Signer, key_id, load_private, load_public
from ..records.audit_store import DirectoryAuditStore
from ..records.audit_verify import AuditProblem, check_recording, parse_entries, verify_log


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = subparsers.add_parser("audit", help="verify and export call audit logs")
    actions = audit.add_subparsers(dest="action", required=True)
    env_dir = os.environ.get("VOICEFLEET_AUDIT_DIR")
    env_key = os.environ.get("VOICEFLEET_AUDIT_KEY_FILE")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("call", help="the call (session) id")
        p.add_argument(
            "--dir",
            type=Path,
            default=Path(env_dir) if env_dir else None,
            required=env_dir is None,
            help="the audit directory (default: $VOICEFLEET_AUDIT_DIR)",
        )

    key_help = "Ed25519 key: PEM public key, PEM private key or 32-byte seed (repeatable; "
    verify = actions.add_parser("verify", help="prove a call's audit chain, signature and recording")
    common(verify)
    verify.add_argument(
        "--key", type=Path, action="append", help=key_help + "default: $VOICEFLEET_AUDIT_KEY_FILE)"
    )
    verify.add_argument(
        "--allow-unsigned-tail",
        action="store_true",
        help="prove the signed prefix of a log whose pod died mid-write, ignoring what follows its head",
    )
    verify.add_argument("--recording", type=Path, help="the recording file (default: from its entry)")
    verify.add_argument(
        "--recordings-root",
        type=Path,
        help="what a recording entry's relative location is relative to (default: the audit dir's parent)",
    )
    verify.set_defaults(func=run_verify, env_key=env_key)

    export = actions.add_parser("export", help="print a call's transcript with its audio offsets")
    common(export)
    export.add_argument("--json", action="store_true", help="the entries as a JSON array")
    export.add_argument(
        "--raw", action="store_true", help="decrypt the kept raw text (needs the private key)"
    )
    export.add_argument(
        "--key", type=Path, help="the private key for --raw (default: $VOICEFLEET_AUDIT_KEY_FILE)"
    )
    export.set_defaults(func=run_export, env_key=env_key)

    public = actions.add_parser("public-key", help="print the PEM public key (and its id) of a signing key")
    public.add_argument("--key", type=Path, required=True, help="the signing key: PEM or 32-byte seed")
    public.set_defaults(func=run_public_key)


def _fail(action: str, message: str, code: int = 1) -> int:
    print(f"voicefleet audit {action}: {message}", file=sys.stderr)
    return code


class _NoLogs(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _call_logs(args: argparse.Namespace) -> tuple[DirectoryAuditStore, list[str]]:
    """The store and the call's logs (its legs, in order); _NoLogs when there is none to read."""
    store = DirectoryAuditStore(args.dir)
    try:
        logs = store.logs(args.call)
    except ValueError as exc:
        raise _NoLogs(str(exc), 2) from None
    if not logs:
        raise _NoLogs(f"no audit log of call {args.call} in {args.dir}", 1)
    return store, logs


def run_verify(args: argparse.Namespace) -> int:
    paths: list[Path] = args.key or ([Path(args.env_key)] if args.env_key else [])
    if not paths:
        return _fail("verify", "no verification key: give --key or set VOICEFLEET_AUDIT_KEY_FILE", 2)
    keys: dict[str, Ed25519PublicKey] = {}
    try:
        for path in paths:
            public = load_public(path.read_bytes())
            keys[key_id(public)] = public
    except (OSError, AuditKeyError, ValueError) as exc:
        return _fail("verify", f"cannot load the key: {exc}", 2)
    try:
        store, logs = _call_logs(args)
    except _NoLogs as exc:
        return _fail("verify", str(exc), exc.code)
    recordings: list[RecordingEntry] = []  # one per leg that finished its recording
    for log in logs:
        try:
            verified = verify_log(
                log, store.read_entries(log), store.read_head(log), keys, args.allow_unsigned_tail
            )
        except AuditProblem as exc:
            return _fail("verify", f"{log}: {exc}")
        if verified.recording is not None:
            recordings.append(verified.recording)
        print(
            f"ok {log}: {len(verified.entries)} entries, seq 0..{len(verified.entries) - 1}, "
            f"head signed with key {verified.key_id}"
        )
        if verified.unsigned_tail:
            print(f"warning {log}: {verified.unsigned_tail} line(s) after the signed head ignored (unproven)")
    if not recordings:
        print(f"call {args.call}: no recording entry (nothing to check)")
        return 0
    if args.recording is not None and len(recordings) > 1:
        return _fail("verify", f"{len(recordings)} legs have recordings: --recording names one file", 2)
    root = args.recordings_root or args.dir.parent
    for recording in recordings:
        audio_path: Path | None = args.recording or _recording_path(recording.location, root)
        if audio_path is None:
            return _fail("verify", f"the recording is at {recording.location}: fetch it and give --recording")
        try:
            audio = audio_path.read_bytes()
        except OSError as exc:
            return _fail("verify", f"seq {recording.seq}: cannot read the recording {audio_path}: {exc}")
        try:
            check_recording(recording, audio)
        except AuditProblem as exc:
            return _fail("verify", f"{audio_path}: {exc}")
        print(f"ok recording {audio_path}: sha256 {recording.sha256} ({recording.bytes} bytes)")
    return 0


def _recording_path(location: str, root: Path) -> Path | None:
    if "://" in location:
        return None
    path = Path(location)
    return path if path.is_absolute() else root / path


def run_export(args: argparse.Namespace) -> int:
    signer = None
    if args.raw:
        key = args.key or (Path(args.env_key) if args.env_key else None)
        if key is None:
            return _fail("export", "--raw needs the private key: --key or VOICEFLEET_AUDIT_KEY_FILE", 2)
        try:
            signer = Signer(load_private(key.read_bytes()))
        except (OSError, AuditKeyError, ValueError) as exc:
            return _fail("export", f"cannot load the key: {exc}", 2)
    try:
        store, logs = _call_logs(args)
    except _NoLogs as exc:
        return _fail("export", str(exc), exc.code)
    out: list[dict[str, object]] = []
    for log in logs:
        try:
            entries = parse_entries(store.read_entries(log))
        except AuditProblem as exc:
            return _fail("export", f"{log}: {exc} (run voicefleet audit verify)")
        for entry in entries:
            data = entry.model_dump(mode="json")
            if signer is not None and isinstance(entry, TurnEntry) and entry.raw:
                try:
                    data["raw"] = json.loads(signer.open(entry.raw, f"{log}/{entry.turn_id}".encode()))
                except AuditKeyError as exc:
                    return _fail("export", f"{log} seq {entry.seq}: {exc}", 2)
            if args.json:
                out.append({"log": log, **data})
            else:
                print(_line(entry, data))
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


def _offset(ms: int | None) -> str:
    if ms is None:
        return "--:--.---"
    return f"{ms // 60000:02d}:{ms % 60000 / 1000:06.3f}"


def _line(entry: Entry, data: dict[str, object]) -> str:
    at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry.at))
    if isinstance(entry, CallStarted):
        return (
            f"== {entry.log}  {at} UTC  agent {entry.agent} ({entry.namespace})  prompt {entry.prompt_id}  "
            f"pod {entry.pod}  via {entry.transport}" + ("  resumed" if entry.resumed else "")
        )
    if isinstance(entry, CallEnded):
        return f"== ended {at} UTC: {entry.reason}, {entry.turns} turns"
    if isinstance(entry, RecordingEntry):
        return f"== recording {entry.location}  sha256 {entry.sha256}  {entry.bytes} bytes"
    lines = [
        f"[{_offset(entry.audio_start_ms)} - {_offset(entry.audio_end_ms)}] agent"
        + (f" ({entry.node})" if entry.node else "")
        + f": {entry.played_text}"
        + ("  [interrupted]" if entry.interrupted else "")
    ]
    if entry.sent_to_tts != entry.played_text:
        lines.append(f"    sent to TTS: {entry.sent_to_tts}")
    if entry.retranscript is not None:
        wer = f"WER {entry.wer:.2f}" if entry.wer is not None else "WER -"
        lines.append(f"    heard: {entry.retranscript}  ({wer}{', FLAGGED' if entry.flagged else ''})")
    for tool in entry.tools:
        lines.append(f"    tool {tool.name}({tool.arguments}) -> {tool.outcome}")
    if entry.knowledge_docs:
        lines.append(f"    grounded in: {', '.join(entry.knowledge_docs)}")
    if isinstance(data.get("raw"), dict):
        lines.append(f"    raw: {json.dumps(data['raw'], ensure_ascii=False)}")
    return "\n".join(lines)


def run_public_key(args: argparse.Namespace) -> int:
    try:
        public = load_private(args.key.read_bytes()).public_key()
    except (OSError, AuditKeyError, ValueError) as exc:
        return _fail("public-key", f"cannot load the key: {exc}", 2)
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    print(f"# key id {key_id(public)}", file=sys.stderr)
    print(pem.decode(), end="")
    return 0
