"""The Media Streams WebSocket protocols of the carriers, as pydantic models, and one codec per carrier.

Each carrier's ``parse`` turns one WebSocket message into a carrier-neutral event (or raises
``BadInput``); its ``media``/``mark``/``clear`` build what the pod sends back.

- Twilio: JSON text messages connected/start/media/mark/dtmf/stop in; media/mark/clear out; base64
  mu-law 8 kHz; the webhook's ``<Parameter>``s arrive in ``start.customParameters``.
- Telnyx: the same events in snake_case (``stream_id``, ``media_format``, ``custom_parameters``), codec
  ``PCMU``.
- Plivo: media/dtmf/start/stop in; ``playAudio``/``checkpoint``/``clearAudio`` out, answered by
  ``playedStream`` (a checkpoint's audio has played) and ``clearedAudio``.
- Vonage: binary frames of 16-bit linear PCM (``audio/l16;rate=16000`` or 8000) both ways; JSON text
  events ``websocket:connected`` (the NCCO's headers at top level), ``websocket:dtmf``,
  ``websocket:notify`` (a ``notify`` action's audio has played) and ``websocket:cleared``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

from ..config import CarrierName
from . import mulaw

Carrier = CarrierName
MAX_PAYLOAD_BYTES = 16_000  # one second of mu-law: carriers send 20 ms


class BadInput(ValueError):
    """A message the stream refuses; ``reason`` labels voicefleet_transport_bad_input_total."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# ---------------------------------------------------------------- carrier-neutral events


@dataclass
class StreamStart:
    stream_id: str
    sample_rate: int  # of the caller's audio, and of the agent's audio sent back
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass
class MediaIn:
    pcm: bytes  # PCM16 at the stream's rate


@dataclass
class MarkPlayed:
    name: str


@dataclass
class Dtmf:
    digit: str


@dataclass
class StreamStopped:
    pass


@dataclass
class Noted:
    """A message with nothing to do (connected, a clear's confirmation)."""


Inbound = StreamStart | MediaIn | MarkPlayed | Dtmf | StreamStopped | Noted


# ---------------------------------------------------------------- wire models


class Camel(BaseModel):
    """Carriers add fields over time: unknown ones are ignored, the ones used are checked."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Snake(BaseModel):
    model_config = ConfigDict(extra="ignore")


class MediaFormat(Camel):
    encoding: str
    sample_rate: int
    channels: int = 1


class TwilioStartInfo(Camel):
    stream_sid: str
    call_sid: str = ""
    account_sid: str = ""
    tracks: list[str] = Field(default_factory=list)
    media_format: MediaFormat
    custom_parameters: dict[str, str] = Field(default_factory=dict)


class Payload(Camel):
    payload: str
    track: str = "inbound"
    chunk: str | None = None
    timestamp: str | None = None


class Named(Camel):
    name: str = Field(max_length=256)


class Digit(Camel):
    digit: str = Field(max_length=8)


class TwilioConnected(Camel):
    event: Literal["connected"]
    protocol: str = ""
    version: str = ""


class TwilioStart(Camel):
    event: Literal["start"]
    start: TwilioStartInfo


class TwilioMedia(Camel):
    event: Literal["media"]
    media: Payload


class TwilioMark(Camel):
    event: Literal["mark"]
    mark: Named


class TwilioDtmf(Camel):
    event: Literal["dtmf"]
    dtmf: Digit


class TwilioStop(Camel):
    event: Literal["stop"]


TwilioIn = Annotated[
    TwilioConnected | TwilioStart | TwilioMedia | TwilioMark | TwilioDtmf | TwilioStop,
    Field(discriminator="event"),
]


class OutPayload(Camel):
    payload: str


class TwilioOutMedia(Camel):
    event: Literal["media"] = "media"
    stream_sid: str
    media: OutPayload


class TwilioOutMark(Camel):
    event: Literal["mark"] = "mark"
    stream_sid: str
    mark: Named


class TwilioOutClear(Camel):
    event: Literal["clear"] = "clear"
    stream_sid: str


class TelnyxMediaFormat(Snake):
    encoding: str
    sample_rate: int
    channels: int = 1


class TelnyxStartInfo(Snake):
    call_control_id: str = ""
    media_format: TelnyxMediaFormat
    custom_parameters: dict[str, str] = Field(default_factory=dict)


class TelnyxConnected(Snake):
    event: Literal["connected"]


class TelnyxStart(Snake):
    event: Literal["start"]
    stream_id: str
    start: TelnyxStartInfo


class TelnyxMedia(Snake):
    event: Literal["media"]
    media: Payload


class TelnyxMark(Snake):
    event: Literal["mark"]
    mark: Named


class TelnyxDtmf(Snake):
    event: Literal["dtmf"]
    dtmf: Digit


class TelnyxStop(Snake):
    event: Literal["stop"]


class TelnyxError(Snake):
    event: Literal["error"]
    payload: dict[str, Any] = Field(default_factory=dict)


TelnyxIn = Annotated[
    TelnyxConnected | TelnyxStart | TelnyxMedia | TelnyxMark | TelnyxDtmf | TelnyxStop | TelnyxError,
    Field(discriminator="event"),
]


class TelnyxOutMedia(Snake):
    event: Literal["media"] = "media"
    media: OutPayload


class TelnyxOutMark(Snake):
    event: Literal["mark"] = "mark"
    mark: Named


class TelnyxOutClear(Snake):
    event: Literal["clear"] = "clear"


class PlivoMediaFormat(Camel):
    encoding: str
    sample_rate: int


class PlivoStartInfo(Camel):
    call_id: str = ""
    stream_id: str
    media_format: PlivoMediaFormat


class PlivoStart(Camel):
    event: Literal["start"]
    start: PlivoStartInfo


class PlivoMedia(Camel):
    event: Literal["media"]
    media: Payload


class PlivoDtmf(Camel):
    event: Literal["dtmf"]
    dtmf: Digit


class PlivoPlayed(Camel):
    event: Literal["playedStream"]
    name: str = Field(max_length=256)


class PlivoCleared(Camel):
    event: Literal["clearedAudio"]


class PlivoStop(Camel):
    event: Literal["stop"]


PlivoIn = Annotated[
    PlivoStart | PlivoMedia | PlivoDtmf | PlivoPlayed | PlivoCleared | PlivoStop,
    Field(discriminator="event"),
]


class PlivoOutMediaBody(Camel):
    content_type: str = "audio/x-mulaw"
    sample_rate: int = mulaw.SAMPLE_RATE
    payload: str


class PlivoPlayAudio(Camel):
    event: Literal["playAudio"] = "playAudio"
    media: PlivoOutMediaBody


class PlivoCheckpoint(Camel):
    event: Literal["checkpoint"] = "checkpoint"
    stream_id: str
    name: str


class PlivoClearAudio(Camel):
    event: Literal["clearAudio"] = "clearAudio"
    stream_id: str


class VonageConnected(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    event: Literal["websocket:connected"]
    content_type: str = Field(alias="content-type")


class VonageDtmf(BaseModel):
    event: Literal["websocket:dtmf"]
    digit: str = Field(max_length=8)


class VonageNotified(BaseModel):
    event: Literal["websocket:notify"]
    payload: Named


class VonageCleared(BaseModel):
    event: Literal["websocket:cleared"]


VonageIn = Annotated[
    VonageConnected | VonageDtmf | VonageNotified | VonageCleared, Field(discriminator="event")
]


class VonageNotify(BaseModel):
    action: Literal["notify"] = "notify"
    payload: Named


class VonageClear(BaseModel):
    action: Literal["clear"] = "clear"


# ---------------------------------------------------------------- codecs


class CarrierCodec(Protocol):
    name: Carrier
    binary_audio: bool
    hangs_up_by_close: bool  # a clean close of the WebSocket is the caller hanging up (no stop event)

    def parse(self, message: str | bytes) -> Inbound: ...

    def media(self, pcm: bytes) -> str | bytes: ...

    def mark(self, name: str) -> str: ...

    def clear(self) -> str: ...


def _json(adapter: TypeAdapter[Any], message: str | bytes) -> Any:
    if isinstance(message, bytes):
        raise BadInput(
            "binary_frame", "binary WebSocket frames are not part of this protocol; send JSON text"
        )
    try:
        raw = json.loads(message)
    except ValueError:
        raise BadInput("not_json", f"message is not JSON: {message[:40]!r}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("event"), str):
        raise BadInput("not_json", "message is not a JSON object with an event")
    try:
        return adapter.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "union_tag_invalid":
            raise BadInput("unknown_event", f"unknown event {raw['event'][:40]!r}") from None
        where = ".".join(str(p) for p in first["loc"])
        raise BadInput(
            "invalid_message", f"invalid {raw['event'][:40]} message: {where}: {first['msg']}"
        ) from None


def _mulaw_payload(payload: str) -> bytes:
    if len(payload) > MAX_PAYLOAD_BYTES * 4 // 3 + 4:
        raise BadInput("payload_too_large", f"media payload over {MAX_PAYLOAD_BYTES} bytes")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput("invalid_base64", "media payload is not valid base64") from None
    if not data:
        raise BadInput("empty_payload", "media payload is empty")
    return mulaw.decode(data)


def _check_mulaw(encoding: str, sample_rate: int, channels: int = 1) -> None:
    if encoding.lower() not in {"audio/x-mulaw", "pcmu", "mulaw", "audio/pcmu"}:
        raise BadInput("wrong_codec", f"unsupported media encoding {encoding[:40]!r}: expected mu-law (PCMU)")
    if sample_rate != mulaw.SAMPLE_RATE or channels != 1:
        raise BadInput(
            "wrong_codec", f"unsupported media format {sample_rate} Hz x {channels}: expected 8000 Hz mono"
        )


def _b64(pcm: bytes) -> str:
    return base64.b64encode(mulaw.encode(pcm)).decode()


class TwilioCodec:
    name: Carrier = "twilio"
    binary_audio = False
    hangs_up_by_close = False
    _adapter: ClassVar[TypeAdapter[Any]] = TypeAdapter(TwilioIn)

    def __init__(self) -> None:
        self.stream_id = ""

    def parse(self, message: str | bytes) -> Inbound:
        msg = _json(self._adapter, message)
        match msg:
            case TwilioStart(start=info):
                _check_mulaw(
                    info.media_format.encoding, info.media_format.sample_rate, info.media_format.channels
                )
                self.stream_id = info.stream_sid
                return StreamStart(info.stream_sid, mulaw.SAMPLE_RATE, dict(info.custom_parameters))
            case TwilioMedia(media=media):
                return MediaIn(_mulaw_payload(media.payload))
            case TwilioMark(mark=mark):
                return MarkPlayed(mark.name)
            case TwilioDtmf(dtmf=dtmf):
                return Dtmf(dtmf.digit)
            case TwilioStop():
                return StreamStopped()
        return Noted()

    def media(self, pcm: bytes) -> str:
        return TwilioOutMedia(stream_sid=self.stream_id, media=OutPayload(payload=_b64(pcm))).model_dump_json(
            by_alias=True
        )

    def mark(self, name: str) -> str:
        return TwilioOutMark(stream_sid=self.stream_id, mark=Named(name=name)).model_dump_json(by_alias=True)

    def clear(self) -> str:
        return TwilioOutClear(stream_sid=self.stream_id).model_dump_json(by_alias=True)


class TelnyxCodec:
    name: Carrier = "telnyx"
    binary_audio = False
    hangs_up_by_close = False
    _adapter: ClassVar[TypeAdapter[Any]] = TypeAdapter(TelnyxIn)

    def __init__(self) -> None:
        self.stream_id = ""

    def parse(self, message: str | bytes) -> Inbound:
        msg = _json(self._adapter, message)
        match msg:
            case TelnyxStart(stream_id=stream_id, start=info):
                fmt = info.media_format
                _check_mulaw(fmt.encoding, fmt.sample_rate, fmt.channels)
                self.stream_id = stream_id
                return StreamStart(stream_id, mulaw.SAMPLE_RATE, dict(info.custom_parameters))
            case TelnyxMedia(media=media):
                return MediaIn(_mulaw_payload(media.payload))
            case TelnyxMark(mark=mark):
                return MarkPlayed(mark.name)
            case TelnyxDtmf(dtmf=dtmf):
                return Dtmf(dtmf.digit)
            case TelnyxStop():
                return StreamStopped()
        return Noted()

    def media(self, pcm: bytes) -> str:
        return TelnyxOutMedia(media=OutPayload(payload=_b64(pcm))).model_dump_json()

    def mark(self, name: str) -> str:
        return TelnyxOutMark(mark=Named(name=name)).model_dump_json()

    def clear(self) -> str:
        return TelnyxOutClear().model_dump_json()


class PlivoCodec:
    name: Carrier = "plivo"
    binary_audio = False
    hangs_up_by_close = False
    _adapter: ClassVar[TypeAdapter[Any]] = TypeAdapter(PlivoIn)

    def __init__(self) -> None:
        self.stream_id = ""

    def parse(self, message: str | bytes) -> Inbound:
        msg = _json(self._adapter, message)
        match msg:
            case PlivoStart(start=info):
                _check_mulaw(info.media_format.encoding, info.media_format.sample_rate)
                self.stream_id = info.stream_id
                return StreamStart(info.stream_id, mulaw.SAMPLE_RATE)  # parameters: the stream URL's query
            case PlivoMedia(media=media):
                return MediaIn(_mulaw_payload(media.payload))
            case PlivoPlayed(name=name):
                return MarkPlayed(name)
            case PlivoDtmf(dtmf=dtmf):
                return Dtmf(dtmf.digit)
            case PlivoStop():
                return StreamStopped()
        return Noted()

    def media(self, pcm: bytes) -> str:
        return PlivoPlayAudio(media=PlivoOutMediaBody(payload=_b64(pcm))).model_dump_json(by_alias=True)

    def mark(self, name: str) -> str:
        return PlivoCheckpoint(stream_id=self.stream_id, name=name).model_dump_json(by_alias=True)

    def clear(self) -> str:
        return PlivoClearAudio(stream_id=self.stream_id).model_dump_json(by_alias=True)


_L16 = re.compile(r"^audio/l16;\s*rate=(8000|16000)$", re.IGNORECASE)


class VonageCodec:
    name: Carrier = "vonage"
    binary_audio = True
    hangs_up_by_close = True
    _adapter: ClassVar[TypeAdapter[Any]] = TypeAdapter(VonageIn)

    def __init__(self) -> None:
        self.rate = 0

    def parse(self, message: str | bytes) -> Inbound:
        if isinstance(message, bytes):
            if not self.rate:
                raise BadInput("media_before_start", "audio before websocket:connected")
            if len(message) % 2 or not message or len(message) > self.rate * 2:
                raise BadInput("invalid_audio", f"L16 frame of {len(message)} bytes: expected whole samples")
            return MediaIn(message)
        msg = _json(self._adapter, message)
        match msg:
            case VonageConnected(content_type=content_type):
                found = _L16.match(content_type.strip())
                if found is None:
                    raise BadInput(
                        "wrong_codec",
                        f"unsupported content-type {content_type[:40]!r}: expected audio/l16;rate=16000",
                    )
                self.rate = int(found.group(1))
                extra = msg.model_extra or {}
                parameters = {k: v for k, v in extra.items() if isinstance(v, str)}
                return StreamStart("", self.rate, parameters)
            case VonageDtmf(digit=digit):
                return Dtmf(digit)
            case VonageNotified(payload=payload):
                return MarkPlayed(payload.name)
        return Noted()

    def media(self, pcm: bytes) -> bytes:
        return pcm

    def mark(self, name: str) -> str:
        return VonageNotify(payload=Named(name=name)).model_dump_json()

    def clear(self) -> str:
        return VonageClear().model_dump_json()


def codec_for(carrier: Carrier) -> CarrierCodec:
    codecs: dict[Carrier, type[CarrierCodec]] = {
        "twilio": TwilioCodec,
        "telnyx": TelnyxCodec,
        "plivo": PlivoCodec,
        "vonage": VonageCodec,
    }
    return codecs[carrier]()
