"""A call's audit log written by the real writer to a directory, then proven (or caught) by
`voicefleet audit verify`; `voicefleet audit export` reads it back."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from agent_pod.cli import main
from agent_pod.config import AuditSpec
from agent_pod.conversation import ChatMessage, Conversation, ToolCall
from agent_pod.pipeline.compliance import TurnRecord
from agent_pod.records.audit import CallAudit
from agent_pod.records.audit_entries import canonical, entry_hash
from agent_pod.records.audit_keys import Head, Signer, load_private
from agent_pod.records.audit_store import DirectoryAuditStore
from agent_pod.tools.audit import ToolAuditRecord
from tests.support.wait import async_wait_for

CALL = "call-1"


def seed_file(path: Path) -> Path:
    path.write_bytes(os.urandom(32))
    return path


def signer_of(key: Path) -> Signer:
    return Signer(load_private(key.read_bytes()))


async def write_call(
    root: Path,
    key: Path,
    call_id: str = CALL,
    *,
    keep_raw: bool = False,
    recording: Path | None = None,
    leg: str = "0001-pod-a",
) -> str:
    """An honest log: started, two turns (one with a tool call), the recording, ended."""
    policy = AuditSpec(enabled=True, keep_raw_text=keep_raw)
    audit = CallAudit(DirectoryAuditStore(root), policy, signer_of(key), call_id, leg)
    audit.started(
        agent="receptionist",
        namespace="ns",
        prompt_id="v1@sha256:abc",
        prompt_version="v1",
        pod="pod-a",
        transport="grpc",
    )
    conv = Conversation(session_id=call_id, prompt_id="v1@sha256:abc")
    conv.messages.append(
        ChatMessage(
            role="assistant",
            turn_id="t1",
            tool_calls=[
                ToolCall(
                    id="c1", name="charge", arguments='{"card": "4111 1111 1111 1111", "amount": "12.50"}'
                )
            ],
        )
    )
    tools = [
        ToolAuditRecord(
            session_id=call_id,
            agent="receptionist",
            turn_id="t1",
            tool="charge",
            call_id="c1",
            outcome="succeeded",
            attempts=1,
        )
    ]
    audit.turn(
        TurnRecord(
            turn_id="t1",
            sent_to_tts="Charging 4111 1111 1111 1111 now.",
            played_text="Charging 4111 1111 1111 1111 now.",
            played_ms=2400,
            interrupted=False,
            retranscript="charging for one one one now",
            divergence=0.4,
            audit="done",
            audio_start_ms=1200,
            audio_end_ms=3600,
            knowledge_docs=["billing/cards.md"],
        ),
        tools,
        conv,
    )
    audit.turn(
        TurnRecord(
            turn_id="t2",
            sent_to_tts="Call us on +1 415 555 2671 any time.",
            played_text="Call us on",
            played_ms=800,
            interrupted=True,
            audit="skipped",
            audio_start_ms=5000,
            audio_end_ms=5800,
        ),
        tools,
        conv,
    )
    if recording is not None:
        data = await asyncio.to_thread(recording.read_bytes)
        audit.recording(location=recording.name, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    audit.ended("client_ended", tools, conv)
    assert await audit.close()
    return audit.log


@pytest.fixture
def key(tmp_path) -> Path:
    return seed_file(tmp_path / "audit-key")


@pytest.fixture
def records(tmp_path) -> Path:
    root = tmp_path / "records"
    (root / "audit").mkdir(parents=True)
    (root / "call-1.wav").write_bytes(b"RIFF" + os.urandom(4000))
    return root


def verify(capsys, audit_dir: Path, key: Path, *extra: str) -> tuple[int, str]:
    code = main(["audit", "verify", CALL, "--dir", str(audit_dir), "--key", str(key), *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


def lines_of(audit_dir: Path) -> tuple[Path, list[bytes]]:
    [path] = (audit_dir / CALL).glob("*.audit.jsonl")
    return path, path.read_bytes().splitlines(keepends=True)


async def test_honest_log_verifies_with_the_public_key(tmp_path, capsys, key, records):
    audit_dir = records / "audit"
    log = await write_call(audit_dir, key, recording=records / "call-1.wav")
    assert main(["audit", "public-key", "--key", str(key)]) == 0
    public = tmp_path / "audit-public.pem"
    public.write_text(capsys.readouterr().out)
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    code, out = verify(capsys, audit_dir, public)
    assert code == 0, out
    assert f"ok {log}: 5 entries, seq 0..4" in out
    assert "ok recording" in out and "call-1.wav" in out
    # Stored text is redacted: no card or phone digits anywhere in the log.
    _, lines = lines_of(audit_dir)
    stored = b"".join(lines).decode()
    assert "4111 1111" not in stored and "555 2671" not in stored
    assert "[card ending 1111]" in stored and "[phone]" in stored


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ("byte", "seq 1: altered (its hash does not match the prev of seq 2)"),
        ("last_byte", "seq 4: altered (its hash does not match the signed head)"),
        ("delete", "seq 2: missing (the entry after seq 1 is seq 3): removed"),
        ("reorder", "seq 1: out of order (found seq 2 in its place)"),
        ("truncate", "seq 4: missing (the log ends at seq 3; the signed head covers up to seq 4): truncated"),
        ("append", "seq 5: not covered by the signed head (it ends at seq 4): appended"),
        ("signature", "the head's signature does not verify with key"),
        ("head_of_other_call", "the head belongs to log call-2/"),
        ("recording", "seq 3: the recording differs from its entry"),
        ("no_head", "the log has no signed head"),
    ],
)
async def test_tampering_is_caught_naming_the_first_bad_seq(tmp_path, capsys, key, records, tamper, message):
    audit_dir = records / "audit"
    await write_call(audit_dir, key, recording=records / "call-1.wav")
    path, lines = lines_of(audit_dir)
    head_path = path.with_name(path.name.replace(".audit.jsonl", ".head.json"))
    if tamper == "byte":  # one character of seq 1's text, still valid canonical JSON
        lines[1] = lines[1].replace(b"Charging", b"Chargin9", 1)
    elif tamper == "last_byte":
        lines[4] = lines[4].replace(b"client_ended", b"client_endeD")
    elif tamper == "delete":
        del lines[2]
    elif tamper == "reorder":
        lines[1], lines[2] = lines[2], lines[1]
    elif tamper == "append":  # a well-formed entry chained onto the last, without the key
        forged = {"seq": 5, "prev": entry_hash(lines[4].rstrip(b"\n")), "at": 0.0, "type": "call_ended"}
        lines.append(canonical({**forged, "reason": "forged", "turns": 9, "tools": []}) + b"\n")
    elif tamper == "truncate":
        del lines[4]
    elif tamper == "signature":  # another signature by the same key, over another head
        head = json.loads(head_path.read_bytes())
        other = tmp_path / "other"
        await write_call(other, key, CALL)
        [other_head] = (other / CALL).glob("*.head.json")
        head["signature"] = json.loads(other_head.read_bytes())["signature"]
        head_path.write_text(json.dumps(head))
    elif tamper == "head_of_other_call":
        other = tmp_path / "other"
        await write_call(other, key, "call-2")
        [other_head] = (other / "call-2").glob("*.head.json")
        head_path.write_bytes(other_head.read_bytes())
    elif tamper == "recording":
        wav = records / "call-1.wav"
        data = bytearray(wav.read_bytes())
        data[100] ^= 1
        wav.write_bytes(bytes(data))
    elif tamper == "no_head":
        head_path.unlink()
    path.write_bytes(b"".join(lines))
    code, out = verify(capsys, audit_dir, key)
    assert code == 1, out
    assert message in out


async def test_every_legs_recording_is_proven(capsys, key, records):
    """A call resumed on another pod has a log and a recording per leg: verify checks each recording."""
    audit_dir = records / "audit"
    second = records / "call-1-leg2.wav"
    second.write_bytes(b"RIFF" + os.urandom(4000))
    await write_call(audit_dir, key, recording=records / "call-1.wav", leg="0001-pod-a")
    await write_call(audit_dir, key, recording=second, leg="0002-pod-b")
    code, out = verify(capsys, audit_dir, key)
    assert code == 0, out
    assert out.count("ok recording") == 2 and "call-1-leg2.wav" in out
    second.write_bytes(b"RIFF" + os.urandom(4000))
    code, out = verify(capsys, audit_dir, key)
    assert code == 1 and "call-1-leg2.wav" in out and "the recording differs from its entry" in out


async def test_a_key_not_given_is_named(tmp_path, capsys, key, records):
    audit_dir = records / "audit"
    await write_call(audit_dir, key)
    code, out = verify(capsys, audit_dir, seed_file(tmp_path / "other-key"))
    assert code == 1
    assert "which was not given" in out
    assert "no recording entry" not in out


async def test_export_prints_offsets_and_raw_text_only_with_the_key(tmp_path, capsys, key, records):
    audit_dir = records / "audit"
    await write_call(audit_dir, key, keep_raw=True)
    assert main(["audit", "export", CALL, "--dir", str(audit_dir)]) == 0
    text = capsys.readouterr().out
    assert "[00:01.200 - 00:03.600] agent: Charging [card ending 1111] now." in text
    assert "heard: charging for one one one now  (WER 0.40)" in text
    assert 'tool charge({"card":"[card ending 1111]","amount":"12.50"}) -> succeeded' in text
    assert "grounded in: billing/cards.md" in text
    assert "[00:05.000 - 00:05.800] agent: Call us on  [interrupted]" in text
    assert "4111 1111" not in text
    assert main(["audit", "export", CALL, "--dir", str(audit_dir), "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["type"] for e in entries] == ["call_started", "turn", "turn", "call_ended"]
    assert entries[1]["redactions"] == {"card": 3} and entries[1]["raw"]  # sealed, unreadable here
    assert entries[1]["knowledge_docs"] == ["billing/cards.md"] and entries[2]["knowledge_docs"] == []
    assert "4111" not in json.dumps(entries)
    assert main(["audit", "export", CALL, "--dir", str(audit_dir), "--json", "--raw", "--key", str(key)]) == 0
    raw = json.loads(capsys.readouterr().out)[1]["raw"]
    assert raw["sent_to_tts"] == "Charging 4111 1111 1111 1111 now."
    assert raw["tools"] == [
        {"call_id": "c1", "arguments": '{"card": "4111 1111 1111 1111", "amount": "12.50"}'}
    ]
    wrong = seed_file(tmp_path / "wrong")
    assert main(["audit", "export", CALL, "--dir", str(audit_dir), "--raw", "--key", str(wrong)]) == 2
    assert "does not open with this key" in capsys.readouterr().err


async def test_a_failing_store_is_retried_and_the_log_completes(tmp_path, capsys, key):
    audit_dir = tmp_path / "audit"
    audit_dir.mkdir()
    (audit_dir / CALL).write_text("a file where the call's folder goes: every write fails")
    failures = lambda: REGISTRY.get_sample_value("voicefleet_audit_write_failures_total") or 0.0  # noqa: E731
    before = failures()
    policy = AuditSpec(enabled=True)
    audit = CallAudit(DirectoryAuditStore(audit_dir), policy, signer_of(key), CALL, "0001-pod-a")
    audit.started(agent="a", namespace="ns", prompt_id="p", prompt_version="", pod="pod-a", transport="grpc")

    async def failed_twice() -> bool:
        return failures() >= before + 2

    await async_wait_for(failed_twice, 5, what="two failed writes")
    audit.ended("client_ended", [], Conversation(session_id=CALL, prompt_id="p"))
    (audit_dir / CALL).unlink()  # storage recovers
    assert await audit.close()
    code, out = verify(capsys, audit_dir, key)
    assert code == 0, out
    assert "2 entries" in out
    audit.ended("late", [], Conversation(session_id=CALL, prompt_id="p"))  # after close: dropped, not raised


async def test_a_log_cut_mid_write_proves_its_signed_prefix_only_when_asked(capsys, key, records):
    """What a pod killed mid-call leaves: the head it last wrote (seq 2), one entry written after it,
    and half of the next line."""
    audit_dir = records / "audit"
    log = await write_call(audit_dir, key, recording=records / "call-1.wav")
    path, lines = lines_of(audit_dir)
    signer = signer_of(key)
    head = Head(log=log, seq=2, hash=entry_hash(lines[2].rstrip(b"\n")), key_id=signer.key_id, signed_at=1.0)
    path.with_name(path.name.replace(".audit.jsonl", ".head.json")).write_bytes(
        canonical(signer.sign(head).model_dump())
    )
    path.write_bytes(b"".join(lines[:4]) + lines[4][:20])
    code, out = verify(capsys, audit_dir, key)
    assert code == 1 and "the log ends in a partial line after seq 3" in out
    code, out = verify(capsys, audit_dir, key, "--allow-unsigned-tail")
    assert code == 0, out
    assert f"ok {log}: 3 entries, seq 0..2" in out
    assert "2 line(s) after the signed head ignored" in out
    # The allowance does not cover changes inside the signed prefix.
    path.write_bytes(lines[0] + lines[1].replace(b"Charging", b"Chargin9") + b"".join(lines[2:4]))
    code, out = verify(capsys, audit_dir, key, "--allow-unsigned-tail")
    assert code == 1 and "seq 1: altered" in out
