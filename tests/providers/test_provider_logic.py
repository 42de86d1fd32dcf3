"""The pure decisions of the cloud providers, tested directly."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from deepgram.core.api_error import ApiError
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall, ChoiceDeltaToolCallFunction

from agent_pod.config import LLMProvider, STTProvider, TTSProvider
from agent_pod.conversation import ChatMessage, ToolCall
from agent_pod.providers.base import LLM, STT, TTS, ProviderError, Transcript
from agent_pod.providers.deepgram_common import environment_for, sample_rate_option
from agent_pod.providers.deepgram_common import provider_error as deepgram_error
from agent_pod.providers.deepgram_stt import DeepgramSTT, UtteranceText, passthrough_params, vocabulary_params
from agent_pod.providers.deepgram_tts import DeepgramTTS
from agent_pod.providers.openai_llm import OpenAILLM, ToolCallAssembler, to_api_messages
from agent_pod.providers.openai_stt import OpenAISTT, streams_transcript, vocabulary_prompt
from agent_pod.providers.openai_tts import OpenAITTS
from agent_pod.providers.pcm_stream import whole_samples


def delta(
    index: int, id: str | None = None, name: str | None = None, args: str | None = None
) -> ChoiceDeltaToolCall:
    return ChoiceDeltaToolCall(
        index=index, id=id, function=ChoiceDeltaToolCallFunction(name=name, arguments=args)
    )


def test_assembler_orders_by_index_and_joins_fragments() -> None:
    a = ToolCallAssembler()
    a.add([delta(1, "c2", "book", "")])
    a.add([delta(0, "c1", "weather", '{"ci')])
    a.add([delta(1, args='{"n": 2}'), delta(0, args='ty": "Oslo"}')])
    assert a.complete() == [
        ToolCall(id="c1", name="weather", arguments='{"city": "Oslo"}'),
        ToolCall(id="c2", name="book", arguments='{"n": 2}'),
    ]
    assert a.complete() == []  # cleared


def test_assembler_fills_a_missing_id_and_empty_arguments() -> None:
    a = ToolCallAssembler()
    a.add([delta(0, name="hang_up"), delta(1, name="hang_up")])
    first, second = a.complete()
    assert first.arguments == "{}"
    assert first.id.startswith("call_") and first.id != second.id


def test_assembler_refuses_a_call_without_a_name() -> None:
    a = ToolCallAssembler()
    a.add([delta(0, "c1", args="{}")])
    with pytest.raises(ProviderError, match="without a function name"):
        a.complete()


def test_messages_keep_text_next_to_tool_calls() -> None:
    call = ToolCall(id="c1", name="weather", arguments="{}")
    sent = to_api_messages([ChatMessage(role="assistant", content="One moment.", tool_calls=[call])])
    assert sent == [
        {
            "role": "assistant",
            "content": "One moment.",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
            ],
        }
    ]
    assert to_api_messages([ChatMessage(role="assistant", content="")]) == [
        {"role": "assistant", "content": ""}
    ]


def test_a_tool_message_needs_its_call_id() -> None:
    with pytest.raises(ProviderError, match="tool_call_id"):
        to_api_messages([ChatMessage(role="tool", content="42")])


def test_transcription_streaming_and_prompt() -> None:
    assert not streams_transcript("whisper-1")
    assert streams_transcript("gpt-4o-transcribe")
    assert vocabulary_prompt([" Napoli ", "", "table"]) == "Napoli, table"


def test_deepgram_vocabulary_by_model() -> None:
    assert vocabulary_params("nova-3-general", ["a b", " "]) == {"keyterm": ["a b"]}
    assert vocabulary_params("nova-2", ["word"]) == {"keywords": ["word"]}
    assert vocabulary_params("nova-3", []) == {}
    assert passthrough_params({"model": "x", "sample_rate": "8000", "punctuate": "true"}) == {
        "punctuate": "true"
    }


def test_deepgram_sample_rate_option() -> None:
    assert sample_rate_option({}, 24000) == 24000
    assert sample_rate_option({"sample_rate": "8000"}, 24000) == 8000
    for bad in ("16k", "96000", ""):
        with pytest.raises(ValueError, match=r"options\.sample_rate"):
            sample_rate_option({"sample_rate": bad}, 16000)


def test_deepgram_environment_from_base_url() -> None:
    local = environment_for("http://127.0.0.1:8080/")
    assert (local.base, local.production) == ("http://127.0.0.1:8080", "ws://127.0.0.1:8080")
    secure = environment_for("https://dg.example.internal")
    assert (secure.base, secure.production) == ("https://dg.example.internal", "wss://dg.example.internal")
    assert environment_for("").production == "wss://api.deepgram.com"


def test_deepgram_error_never_carries_the_authorization_header() -> None:
    exc = ApiError(
        status_code=401, headers={"Authorization": "Token dg-secret"}, body={"err_code": "INVALID_AUTH"}
    )
    error = deepgram_error("listen", exc)
    assert str(error) == "deepgram listen: HTTP 401 INVALID_AUTH"


class TestUtteranceText:
    def test_partials_carry_the_finalized_segments(self) -> None:
        u = UtteranceText()
        assert u.result("book a", 0.0, 0.5, is_final=False, from_finalize=False) == [
            Transcript("book a", False)
        ]
        assert u.result("book a table", 0.0, 1.0, is_final=True, from_finalize=False) == [
            Transcript("book a table", False)
        ]
        assert u.result("for", 1.0, 0.3, is_final=False, from_finalize=False) == [
            Transcript("book a table for", False)
        ]
        assert u.result("", 1.0, 0.3, is_final=False, from_finalize=False) == []

    def test_final_waits_for_the_flush_reply(self) -> None:
        u = UtteranceText()
        u.result("book a table", 0.0, 1.0, is_final=True, from_finalize=False)
        assert u.finalize(sent_seconds=1.5) == []  # 0.5 s not yet accounted for
        assert u.result("for two", 1.0, 0.5, is_final=True, from_finalize=True) == [
            Transcript("book a table for two", True)
        ]
        assert u.committed == [] and not u.pending

    def test_final_at_once_when_segments_cover_the_audio(self) -> None:
        u = UtteranceText()
        u.result("hello", 0.0, 0.97, is_final=True, from_finalize=False)
        assert u.finalize(sent_seconds=1.0) == [Transcript("hello", True)]  # within the slack

    def test_empty_utterance_and_expiry(self) -> None:
        u = UtteranceText()
        assert u.finalize(sent_seconds=0.0) == [Transcript("", True)]
        u.result("half", 0.0, 0.5, is_final=True, from_finalize=False)
        assert u.finalize(sent_seconds=2.0) == []
        assert u.expire(2) == [Transcript("half", True)]
        assert u.expire(2) == []  # answered already

    def test_a_late_grace_timer_leaves_the_next_utterance_alone(self) -> None:
        u = UtteranceText()
        u.result("one", 0.0, 1.0, is_final=True, from_finalize=False)
        assert u.finalize(sent_seconds=1.0) == [Transcript("one", True)]  # finalize #1, answered
        u.result("tw", 1.0, 0.5, is_final=False, from_finalize=False)
        assert u.finalize(sent_seconds=2.0) == []  # finalize #2 waits for its flush reply
        assert u.expire(1) == []  # the grace of #1 ends now: it must not cut #2 short
        assert u.result("two", 1.0, 1.0, is_final=True, from_finalize=True) == [Transcript("two", True)]

    def test_a_flush_reply_answers_one_finalize(self) -> None:
        u = UtteranceText()
        u.finalize(sent_seconds=1.0)
        u.finalize(sent_seconds=2.0)
        assert u.result("one", 0.0, 0.6, is_final=True, from_finalize=True) == [Transcript("one", True)]
        assert u.result("two", 1.0, 1.0, is_final=True, from_finalize=False) == [Transcript("two", True)]


async def test_whole_samples_recuts_odd_chunks() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for c in (b"\x01", b"\x02\x03\x04\x05", b"", b"\x06\x07"):
            yield c

    assert [c async for c in whole_samples(chunks())] == [b"\x01\x02\x03\x04", b"\x05\x06"]


def test_providers_implement_the_stage_interfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Typed so that mypy checks the Protocols; at run time, names and rates as the registry sees them."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg-x")
    stts: list[STT] = [
        OpenAISTT(STTProvider(provider="openai")),
        DeepgramSTT(STTProvider(provider="deepgram", options={"sample_rate": "8000"})),
    ]
    llm: LLM = OpenAILLM(LLMProvider(provider="openai"))
    ttss: list[TTS] = [
        OpenAITTS(TTSProvider(provider="openai")),
        DeepgramTTS(TTSProvider(provider="deepgram")),
    ]
    assert [(s.name, s.sample_rate) for s in stts] == [("openai", 16000), ("deepgram", 8000)]
    assert llm.name == "openai"
    assert [(t.name, t.sample_rate) for t in ttss] == [("openai", 24000), ("deepgram", 24000)]
