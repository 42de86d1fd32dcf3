"""A local server speaking enough of the OpenAI HTTP API for the real ``openai`` SDK.

Endpoints (under /v1): chat/completions (SSE chunks with text and tool-call deltas
split over several chunks, or one JSON answer), audio/speech (streamed PCM16 from
espeak-ng), audio/transcriptions (multipart WAV in; scripted text or pocketsphinx;
SSE deltas with ``stream=true``), embeddings (bag-of-words vectors: texts sharing words are near;
float or base64). Bearer auth is checked. Replies are scripted per
test (``script_chat``: a queue), per prompt version (``script_prompt``: rules for conversations
whose system prompt holds a marker), else a deterministic echo. Run standalone with
``python -m tests.wire.openai_server --port N``; script it then over /_control.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import json
import re
import time
import uuid
import wave
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
from aiohttp import web
from pydantic import BaseModel, Field

from .base import WireServer
from .speech import Recognizer, espeak_pcm

DEFAULT_KEY = "sk-test-local"
SPEECH_RATE = 24000  # OpenAI's response_format=pcm is 24 kHz PCM16 mono
EMBEDDING_DIMENSIONS = 64  # when a request names none
MAX_EMBEDDING_INPUTS = 2048  # the real API's limit per request


class ScriptedToolCall(BaseModel):
    name: str
    arguments: str = Field(description="JSON text of the arguments.")
    id: str = Field(default_factory=lambda: f"call_{uuid.uuid4().hex[:12]}")


class ChatReply(BaseModel):
    """One scripted assistant answer and how it is cut into stream chunks."""

    text: str = ""
    tool_calls: list[ScriptedToolCall] = Field(default_factory=list)
    text_chunk_chars: int = Field(default=4, ge=1)
    argument_pieces: int = Field(
        default=3, ge=1, description="Chunks each tool call's arguments are split in."
    )
    interleave: bool = Field(default=False, description="Alternate the argument chunks of parallel calls.")


def _split(text: str, pieces: int) -> list[str]:
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _tool_call_deltas(reply: ChatReply) -> list[dict[str, Any]]:
    """Tool-call deltas as OpenAI streams them: id, type and name first, then argument fragments."""
    heads = [
        {"index": i, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}
        for i, c in enumerate(reply.tool_calls)
    ]
    pieces = [
        [{"index": i, "function": {"arguments": p}} for p in _split(c.arguments, reply.argument_pieces)]
        for i, c in enumerate(reply.tool_calls)
    ]
    if not reply.interleave:
        return [d for head, rest in zip(heads, pieces, strict=True) for d in (head, *rest)]
    deltas = list(heads)
    for round_ in range(max((len(p) for p in pieces), default=0)):
        deltas.extend(p[round_] for p in pieces if round_ < len(p))
    return deltas


def chat_chunks(reply: ChatReply, model: str, include_usage: bool) -> list[dict[str, Any]]:
    """The chat.completion.chunk objects of one streamed answer."""
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    n = reply.text_chunk_chars
    chunks += [chunk({"content": reply.text[i : i + n]}) for i in range(0, len(reply.text), n)]
    chunks += [chunk({"tool_calls": [d]}) for d in _tool_call_deltas(reply)]
    chunks.append(chunk({}, "tool_calls" if reply.tool_calls else "stop"))
    if include_usage:
        chunks.append(
            {**base, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        )
    return chunks


def chat_completion(reply: ChatReply, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in reply.tool_calls
        ]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if reply.tool_calls else "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def message_error(messages: Any) -> str | None:
    """The 400 the real API gives for a malformed history (tool messages must answer tool calls)."""
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    open_ids: set[str] = set()
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in {"system", "developer", "user", "assistant", "tool"}:
            return f"messages[{i}]: invalid role {role!r}"
        if open_ids and role != "tool":
            return (
                "An assistant message with 'tool_calls' must be followed by tool messages responding to "
                f"each 'tool_call_id'. Missing: {sorted(open_ids)}"
            )
        if role == "assistant":
            open_ids = {c["id"] for c in m.get("tool_calls") or []}
        elif role == "tool":
            if m.get("tool_call_id") not in open_ids:
                return (
                    f"messages[{i}]: role 'tool' must be a response to a preceding message with 'tool_calls'"
                )
            open_ids.discard(m["tool_call_id"])
    if open_ids:
        return f"tool calls without responses: {sorted(open_ids)}"
    return None


def echo_reply(messages: list[dict[str, Any]]) -> ChatReply:
    """The unscripted answer: deterministic and derived from the last message."""
    last = messages[-1]
    if last.get("role") == "tool":
        return ChatReply(text=f"Done: {last.get('content', '')}")
    return ChatReply(text=f"You said: {last.get('content', '')}")


class PromptRule(BaseModel):
    """How a scripted prompt answers a caller message that matches ``match`` (case-insensitive)."""

    match: str
    reply: str = ""
    tool: str = ""
    arguments: dict[str, Any] = Field(default_factory=dict)
    then: str = Field(
        default="Done.",
        description="The answer once the tool's result came back; {user} is the caller's last message.",
    )


class PromptScript(BaseModel):
    """Answers for every conversation whose system prompt contains ``marker``: a script per prompt
    version, so pods of two revisions get different behaviour from one server."""

    marker: str
    rules: list[PromptRule]

    def reply(self, messages: list[dict[str, Any]]) -> ChatReply:
        last = messages[-1]
        if last.get("role") == "tool":
            call_id = last.get("tool_call_id")
            name = next(
                (
                    c["function"]["name"]
                    for m in messages
                    for c in m.get("tool_calls") or []
                    if c["id"] == call_id
                ),
                "",
            )
            rule = next((r for r in self.rules if r.tool == name), None)
            user = next((str(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
            return ChatReply(
                text=rule.then.replace("{user}", user) if rule else f"Done: {last.get('content', '')}"
            )
        text = str(last.get("content") or "")
        rule = next((r for r in self.rules if re.search(r.match, text, re.IGNORECASE)), None)
        if rule is None:
            return echo_reply(messages)
        calls = [ScriptedToolCall(name=rule.tool, arguments=json.dumps(rule.arguments))] if rule.tool else []
        return ChatReply(text=rule.reply, tool_calls=calls)


def _system_text(messages: list[dict[str, Any]]) -> str:
    return " ".join(str(m.get("content") or "") for m in messages if m.get("role") in {"system", "developer"})


def bag_of_words_embedding(text: str, dimensions: int) -> np.ndarray:
    """A unit vector: the sum of one fixed random vector per word, so texts sharing words are near."""
    total = np.zeros(dimensions, dtype=np.float64)
    for word in re.findall(r"\w+", text.lower()):
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
        total += np.random.default_rng(seed).standard_normal(dimensions)
    norm = np.linalg.norm(total)
    return (total / norm if norm else total).astype(np.float32)


def _sse(objects: list[dict[str, Any]]) -> Iterator[bytes]:
    for obj in objects:
        yield f"data: {json.dumps(obj)}\n\n".encode()
    yield b"data: [DONE]\n\n"


def _error(
    status: int, message: str, code: str | None = None, type_: str = "invalid_request_error"
) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return web.json_response(body, status=status)


class OpenAIServer(WireServer):
    def __init__(self, api_key: str = DEFAULT_KEY) -> None:
        self.chat_script: deque[ChatReply] = deque()
        self.prompt_scripts: list[PromptScript] = []
        self.recognizer = Recognizer()
        self.speech_chunk_bytes = 4800  # 100 ms at 24 kHz
        super().__init__(api_key)

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def chat_requests(self) -> list[list[dict[str, Any]]]:
        """The messages of every chat completion request received, in order."""
        return [r.body["messages"] for r in self.requests if r.path == "/v1/chat/completions"]

    def script_chat(self, *replies: ChatReply) -> None:
        self.chat_script.extend(replies)

    def script_prompt(self, script: PromptScript) -> None:
        """Answer conversations whose system prompt holds ``script.marker`` from its rules."""
        self.prompt_scripts.append(script)

    def _reply(self, messages: list[dict[str, Any]]) -> ChatReply:
        if self.chat_script:
            return self.chat_script.popleft()
        system = _system_text(messages)
        script = next((s for s in self.prompt_scripts if s.marker in system), None)
        return script.reply(messages) if script else echo_reply(messages)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/audio/speech", self._speech)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/_control/chat", self._control_chat)
        app.router.add_post("/_control/transcripts", self._control_transcripts)
        app.router.add_post("/_control/prompts", self._control_prompts)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization", "") == f"Bearer {self.api_key}"

    async def _gatekeep(self, request: web.Request, authorized: bool) -> web.Response | None:
        """Auth and injected failures, checked before any work like the real API."""
        await self.delay_first_byte()
        if not authorized:
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        status = self.faults.take_status()
        if status is not None:
            return _error(
                status, "The server had an error while processing your request.", None, "server_error"
            )
        return None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        authorized = self._authorized(request)
        body = await request.json()
        self.record(request, authorized, body=body)
        if (refusal := await self._gatekeep(request, authorized)) is not None:
            return refusal
        if problem := message_error(body.get("messages")):
            return _error(400, problem)
        if not body.get("model"):
            return _error(400, "you must provide a model parameter")
        reply = self._reply(body["messages"])
        if not body.get("stream"):
            return web.json_response(chat_completion(reply, body["model"]))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        return await self.stream(request, response, _sse(chat_chunks(reply, body["model"], include_usage)))

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        authorized = self._authorized(request)
        body = await request.json()
        self.record(request, authorized, body=body)
        if (refusal := await self._gatekeep(request, authorized)) is not None:
            return refusal
        if not body.get("input") or not body.get("model") or not body.get("voice"):
            return _error(400, "input, model and voice are required")
        if body.get("response_format", "mp3") != "pcm":
            return _error(400, "this local server only produces response_format=pcm")
        pcm = await espeak_pcm(body["input"], SPEECH_RATE)
        size = self.speech_chunk_bytes
        chunks = (pcm[i : i + size] for i in range(0, len(pcm), size))
        return await self.stream(request, web.StreamResponse(headers={"Content-Type": "audio/pcm"}), chunks)

    async def _transcriptions(self, request: web.Request) -> web.StreamResponse:
        authorized = self._authorized(request)
        form = await request.post()
        upload = form.get("file")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        audio = upload.file.read() if isinstance(upload, web.FileField) else b""
        self.record(request, authorized, body=fields, audio_bytes=len(audio))
        if (refusal := await self._gatekeep(request, authorized)) is not None:
            return refusal
        try:
            with wave.open(io.BytesIO(audio)) as w:
                if w.getsampwidth() != 2 or w.getnchannels() != 1:
                    return _error(400, "expected 16-bit mono WAV")
                pcm, rate = w.readframes(w.getnframes()), w.getframerate()
        except (wave.Error, EOFError):
            return _error(400, "Invalid file format. Supported formats: wav")
        text = await self.recognizer.transcribe(pcm, rate)
        if fields.get("stream") != "true":
            if fields.get("response_format") == "text":
                return web.Response(text=text, content_type="text/plain")
            return web.json_response({"text": text})
        if fields.get("model") == "whisper-1":
            return _error(400, "Streaming is not supported for the whisper-1 model.")
        words = text.split()
        events = [
            {"type": "transcript.text.delta", "delta": (" " if i else "") + w} for i, w in enumerate(words)
        ]
        events.append({"type": "transcript.text.done", "text": text})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        return await self.stream(request, response, (f"data: {json.dumps(e)}\n\n".encode() for e in events))

    async def _embeddings(self, request: web.Request) -> web.Response:
        authorized = self._authorized(request)
        body = await request.json()
        self.record(request, authorized, body=body)
        if (refusal := await self._gatekeep(request, authorized)) is not None:
            return refusal
        texts = [body["input"]] if isinstance(body.get("input"), str) else body.get("input")
        if not body.get("model"):
            return _error(400, "you must provide a model parameter")
        if not isinstance(texts, list) or not texts or len(texts) > MAX_EMBEDDING_INPUTS:
            return _error(400, f"input must be a string or a list of 1 to {MAX_EMBEDDING_INPUTS} strings")
        if not all(isinstance(t, str) and t for t in texts):
            return _error(400, "'$.input' is invalid: every input must be a non-empty string")
        dimensions = int(body.get("dimensions") or EMBEDDING_DIMENSIONS)
        data = []
        for i, text in enumerate(texts):
            vector = bag_of_words_embedding(text, dimensions)
            encoded: Any = vector.tolist()
            if body.get("encoding_format") == "base64":
                encoded = base64.b64encode(vector.astype("<f4").tobytes()).decode()
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        tokens = sum(len(t.split()) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return web.json_response({"object": "list", "data": data, "model": body["model"], "usage": usage})

    async def _control_chat(self, request: web.Request) -> web.Response:
        replies = [ChatReply.model_validate(r) for r in await request.json()]
        self.script_chat(*replies)
        return web.json_response({"queued": len(self.chat_script)})

    async def _control_prompts(self, request: web.Request) -> web.Response:
        self.script_prompt(PromptScript.model_validate(await request.json()))
        return web.json_response({"scripts": len(self.prompt_scripts)})

    async def _control_transcripts(self, request: web.Request) -> web.Response:
        self.recognizer.script(*[str(t) for t in await request.json()])
        return web.json_response({"queued": len(self.recognizer.scripted)})


async def _serve(host: str, port: int, api_key: str) -> None:
    server = OpenAIServer(api_key)
    await server.start(host, port)
    print(f"OpenAI wire server on {server.base_url}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=DEFAULT_KEY)
    args = parser.parse_args()
    asyncio.run(_serve(args.host, args.port, args.api_key))


if __name__ == "__main__":
    main()
