"""A real in-process pod with audit on: a call over gRPC (a tool call with a phone number, a card number
read out) leaves a log that `voicefleet audit verify` proves, with the PII redacted."""

from __future__ import annotations

import asyncio
import json
import os

from agent_pod.cli import main
from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.runtime import Pod
from agent_pod.settings import PodSettings
from tests.pipeline.toolserver import ToolServer, tool
from tests.support.pod import pod_ports, synthetic_config

CALLBACK_RULE = {
    "match": "call me back",
    "say": "Sure.",
    "tool": "book_table",
    "arguments": {"time": "19:00", "people": 2, "phone": "+1 415 555 2671"},
    "then": "Booked, confirmation {result[confirmation]}.",
}


async def test_a_grpc_call_leaves_a_verified_redacted_audit_log(tmp_path, capsys):
    key = tmp_path / "audit-key"
    key.write_bytes(os.urandom(32))
    audit_dir = tmp_path / "records" / "audit"
    async with ToolServer() as server:
        spec = tool("book_table", server.url("/book"))
        spec["parameters"]["properties"]["phone"] = {"type": "string"}
        config = synthetic_config(
            audit={"enabled": True},
            tools=[spec],
            pipeline={"llm": {"options": {"rules": json.dumps([CALLBACK_RULE])}}},
        )
        settings = PodSettings(
            bind_host="127.0.0.1",
            pod_name="pod-audit",
            log_format="text",
            audit_dir=audit_dir,
            audit_key_file=key,
        )
        pod = Pod(settings, config, pod_ports())
        await pod.start()
        try:
            async with GrpcCaller(pod.grpc_address) as call:
                call.send_text("my card is 4111 1111 1111 1111")
                await call.recorder.wait(lambda s: len([t for t in s.agent_texts if t]) >= 1, 15)
                call.send_text("please call me back")
                summary = await call.recorder.wait(lambda s: any("Booked" in t for t in s.agent_texts), 15)
                session_id = summary.session_id
                assert pod.hub is not None
                live = pod.hub.find(session_id)
                assert live is not None and live.audit is not None
                await call.end()
                await call.recorder.wait(lambda s: s.ended is not None, 10)
            # The session is released once its audit log is flushed.
            await asyncio.wait_for(live.finished.wait(), 10)
        finally:
            await pod.stop()
    assert server.calls("/book")[0].body["phone"] == "+1 415 555 2671"  # the tool got the real number

    [log] = [p for p in (audit_dir / session_id).glob("*.audit.jsonl")]
    entries = [json.loads(line) for line in (await asyncio.to_thread(log.read_bytes)).splitlines()]
    assert [e["type"] for e in entries] == ["call_started", "turn", "turn", "call_ended"]
    started, card_turn, tool_turn, ended = entries
    assert started["pod"] == "pod-audit" and started["transport"] == "grpc" and started["agent"] == "test"
    assert started["prompt_id"] == config.prompt_id and started["key_id"]
    assert "[card ending 1111]" in card_turn["sent_to_tts"] and "4111" not in card_turn["sent_to_tts"]
    assert card_turn["played_ms"] > 0 and card_turn["retranscription"] == "skipped"  # synthetic STT
    [booked] = tool_turn["tools"]
    assert booked["name"] == "book_table" and booked["outcome"] == "succeeded"
    assert json.loads(booked["arguments"]) == {"time": "19:00", "people": 2, "phone": "[phone]"}
    assert ended["reason"] == "client_ended" and ended["turns"] == 2

    code = main(["audit", "verify", session_id, "--dir", str(audit_dir), "--key", str(key)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "4 entries, seq 0..3" in out.out


async def test_the_audit_log_proves_the_calls_recording(tmp_path, capsys, monkeypatch):
    """Recording and audit on together: the log's recording entry holds the WAV's hash, verify proves it,
    and one changed byte of the audio fails verify."""
    key = tmp_path / "audit-key"
    key.write_bytes(os.urandom(32))
    records = tmp_path / "records"
    monkeypatch.setenv("VOICEFLEET_RECORDINGS_DIR", str(records / "recordings"))
    config = synthetic_config(audit={"enabled": True}, recording={"enabled": True, "flushSeconds": 0.2})
    settings = PodSettings(
        bind_host="127.0.0.1",
        pod_name="pod-rec",
        log_format="text",
        audit_dir=records / "audit",
        audit_key_file=key,
    )
    pod = Pod(settings, config, pod_ports())
    await pod.start()
    try:
        async with GrpcCaller(pod.grpc_address) as call:
            call.send_text("hello there")
            summary = await call.recorder.wait(lambda s: len([t for t in s.agent_texts if t]) >= 1, 15)
            session_id = summary.session_id
            assert pod.hub is not None
            live = pod.hub.find(session_id)
            assert live is not None
            await call.end()
            await call.recorder.wait(lambda s: s.ended is not None, 10)
        await asyncio.wait_for(live.finished.wait(), 10)
    finally:
        await pod.stop()

    info = live.session.recording_info
    assert info is not None and info.bytes > 44
    [log] = list((records / "audit" / session_id).glob("*.audit.jsonl"))
    entries = [json.loads(line) for line in log.read_bytes().splitlines()]
    assert [e["type"] for e in entries][-2:] == ["recording", "call_ended"]
    assert entries[-2]["sha256"] == info.sha256

    argv = ["audit", "verify", session_id, "--dir", str(records / "audit"), "--key", str(key)]
    assert main(argv) == 0, capsys.readouterr().err
    wav = records / "recordings" / info.location  # an absolute location stays itself
    audio = bytearray(wav.read_bytes())
    audio[-1] ^= 0x01
    wav.write_bytes(bytes(audio))
    capsys.readouterr()
    assert main(argv) == 1
    assert "recording differs" in capsys.readouterr().err
