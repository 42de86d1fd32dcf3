"""A pass-through receive buffer for audio that feeds a machine, not a loudspeaker.

aiortc holds audio until 4 later packets arrived (~80 ms) to smooth playout for a
listener, and even without prefetch it waits for the next packet to know a frame
is complete. Opus puts each frame in exactly one RTP packet, and the pod's
receiver feeds VAD and STT, which do not mind audio arriving in bursts: every
packet is handed on as it arrives, and a packet older than one already handed
on is dropped. aiortc has no setting for this: the receiver's buffer is replaced
right after the transceiver is created, before any packet arrives.
"""

from __future__ import annotations

from collections.abc import Callable

from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_gt


class PassThroughAudioBuffer(JitterBuffer):
    """With ``deliver``, each Opus frame goes there and aiortc's decoder gets nothing (the caller decodes)."""

    def __init__(self, deliver: Callable[[bytes], None] | None = None) -> None:
        super().__init__(capacity=2)
        self._deliver = deliver
        self._last: int | None = None
        self.late = 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        sequence = packet.sequence_number
        if self._last is not None and not uint16_gt(sequence, self._last):
            self.late += 1
            return False, None
        self._last = sequence
        data: bytes = packet._data  # type: ignore[attr-defined]  # the depayloaded Opus frame
        if self._deliver is not None:
            self._deliver(data)
            return False, None
        return False, JitterFrame(data=data, timestamp=packet.timestamp)


def pass_through_audio(pc: RTCPeerConnection, deliver: Callable[[bytes], None] | None = None) -> None:
    """Give every audio receiver of ``pc`` the pass-through buffer (before media flows)."""
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "audio":
            buffer = PassThroughAudioBuffer(deliver)
            transceiver.receiver._RTCRtpReceiver__jitter_buffer = buffer  # type: ignore[attr-defined]
