"""Encode every frame once (H.264, PyAV libx264) and keep the packets in a pre-event ring.

A clip is cut from the ring by copying packets, never by re-encoding: it must start at a
keyframe, so the encoder makes one every ``gop_s`` seconds of *source* time (forced by the
frames' stamps, so a variable frame rate does not stretch the interval), and the ring always
holds at least ``keep_s`` seconds counted back from its newest packet *from a keyframe*.

Timeline: packet timestamps come from the image header stamps (integer nanoseconds), in units
of :data:`TIME_BASE` (1/90000 s, the usual video clock), so a clip's frame times map back to the
source stamps to within 11 us. Every keyframe carries its SPS/PPS in band (no global header), so
any keyframe can start a file and the MP4 muxer takes its extradata from the first packet.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

__all__ = [
    "PRESETS",
    "TIME_BASE",
    "EncodedPacket",
    "EncoderSettings",
    "H264Encoder",
    "PacketRing",
    "ns_to_ticks",
]

TIME_BASE = Fraction(1, 90_000)
_TICKS_PER_S = 90_000
PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
# Pixel formats accepted by PyAV's VideoFrame.from_ndarray that the node feeds in.
PIXEL_FORMATS = ("bgr24", "rgb24", "gray", "bgra", "rgba")


def ns_to_ticks(ns: int) -> int:
    """Nanoseconds -> 1/90000 s ticks, rounded to the nearest tick."""
    return (ns * _TICKS_PER_S + 500_000_000) // 1_000_000_000


@dataclass(frozen=True)
class EncodedPacket:
    """One encoded frame. ``stamp_ns``: the image header stamp; ``recv_ns``: wall clock when
    the frame arrived (to line other topics up with it); ``timeline``: which encoder session
    made it (a new size or a stamp jump starts a new one, and a clip never mixes two)."""

    data: bytes
    stamp_ns: int
    ticks: int
    keyframe: bool
    recv_ns: int
    timeline: int
    width: int
    height: int

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class EncoderSettings:
    crf: int = 23
    preset: str = "ultrafast"
    gop_s: float = 1.0
    threads: int = 0  # 0: libx264 decides

    def __post_init__(self) -> None:
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in 0..51, got {self.crf}")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if not 0.05 <= self.gop_s <= 60:
            raise ValueError(f"gop_s must be in 0.05..60, got {self.gop_s}")
        if not 0 <= self.threads <= 64:
            raise ValueError(f"threads must be in 0..64, got {self.threads}")


class H264Encoder:
    """libx264, zero latency (no B-frames, no lookahead: one packet out per frame in), a
    keyframe every ``gop_s`` seconds of stamps. Odd widths/heights lose their last column/row
    (yuv420p needs even sizes). Not thread-safe: one thread encodes."""

    def __init__(self, settings: EncoderSettings | None = None) -> None:
        self.settings = settings or EncoderSettings()
        self._ctx: av.video.codeccontext.VideoCodecContext | None = None
        self._size: tuple[int, int] | None = None
        self._last_key_ns: int | None = None
        self._last_stamp_ns: int | None = None
        self._last_ticks = -1
        self.timeline = 0
        self.frames = 0
        self.encode_s = 0.0  # total seconds spent in encode()

    @property
    def size(self) -> tuple[int, int] | None:
        return self._size

    def _open(self, width: int, height: int) -> None:
        s = self.settings
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = TIME_BASE
        ctx.gop_size = 1_000_000  # keyframes are forced by stamp (see encode)
        ctx.thread_count = s.threads
        ctx.options = {
            "preset": s.preset,
            "tune": "zerolatency",
            "crf": str(s.crf),
            "forced-idr": "1",
        }
        ctx.open()
        self._ctx = ctx
        self._size = (width, height)
        self._last_key_ns = None
        self._last_ticks = -1
        self.timeline += 1

    def reset(self) -> None:
        """Drop the encoder; the next frame opens a new one on a new timeline."""
        self._ctx = None
        self._size = None
        self._last_stamp_ns = None

    def encode(
        self, image: np.ndarray, stamp_ns: int, pixel_format: str = "bgr24", recv_ns: int = 0
    ) -> list[EncodedPacket]:
        """Encode one frame (H x W x C uint8, or H x W for ``gray``); returns its packet(s)."""
        started = time.perf_counter()
        height, width = image.shape[0] - image.shape[0] % 2, image.shape[1] - image.shape[1] % 2
        if width < 16 or height < 16:
            raise ValueError(f"frame too small to encode: {image.shape[1]}x{image.shape[0]}")
        if (width, height) != (image.shape[1], image.shape[0]):
            image = image[:height, :width]
        if (
            self._ctx is None
            or self._size != (width, height)
            # The stamps jumped back (a source restarted with another clock): new timeline.
            or (self._last_stamp_ns is not None and stamp_ns < self._last_stamp_ns - 10**9)
        ):
            self._open(width, height)
        assert self._ctx is not None
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=pixel_format)
        # Strictly increasing pts: a repeated stamp is nudged forward by one tick.
        ticks = max(ns_to_ticks(stamp_ns), self._last_ticks + 1)
        frame.pts = ticks
        frame.time_base = TIME_BASE
        gop_ns = round(self.settings.gop_s * 1e9)
        # 5 ms of slack so that a 30 fps stream does not slip one frame per GOP.
        if self._last_key_ns is None or stamp_ns - self._last_key_ns >= gop_ns - 5_000_000:
            frame.pict_type = av.video.frame.PictureType.I
        out = []
        for packet in self._ctx.encode(frame):
            key = bool(packet.is_keyframe)
            if key:
                self._last_key_ns = stamp_ns
            out.append(
                EncodedPacket(
                    data=bytes(packet),
                    stamp_ns=stamp_ns,
                    ticks=int(packet.pts),
                    keyframe=key,
                    recv_ns=recv_ns or time.time_ns(),
                    timeline=self.timeline,
                    width=width,
                    height=height,
                )
            )
        self._last_ticks = ticks
        self._last_stamp_ns = stamp_ns
        self.frames += 1
        self.encode_s += time.perf_counter() - started
        return out


class PacketRing:
    """Encoded packets of the last ``keep_s`` seconds, always starting at a keyframe.

    The oldest GOP is dropped only when the next keyframe is itself at least ``keep_s`` older
    than the newest packet, so ``select(newest - keep_s)`` always finds a keyframe at or before
    its start. ``max_bytes`` bounds memory whatever the bitrate (then fewer seconds are kept).
    Thread-safe.
    """

    def __init__(self, keep_s: float, max_bytes: int = 256 << 20) -> None:
        self._packets: collections.deque[EncodedPacket] = collections.deque()
        self._lock = threading.Lock()
        self.keep_s = keep_s
        self.max_bytes = max_bytes
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._packets)

    def __iter__(self) -> Iterator[EncodedPacket]:
        with self._lock:
            return iter(list(self._packets))

    def clear(self) -> None:
        with self._lock:
            self._packets.clear()
            self.bytes = 0

    def append(self, packet: EncodedPacket) -> None:
        with self._lock:
            if self._packets and packet.timeline != self._packets[-1].timeline:
                self._packets.clear()  # another timeline: what is kept cannot be joined to it
                self.bytes = 0
            if not self._packets and not packet.keyframe:
                return  # a ring starts at a keyframe
            self._packets.append(packet)
            self.bytes += packet.size
            self._trim()

    def _trim(self) -> None:
        keep_ns = round(self.keep_s * 1e9)
        newest = self._packets[-1].stamp_ns
        while True:
            second_key = next(
                (i for i, p in enumerate(self._packets) if i > 0 and p.keyframe), None
            )
            if second_key is None:
                return
            over_budget = self.bytes > self.max_bytes
            if newest - self._packets[second_key].stamp_ns < keep_ns and not over_budget:
                return
            for _ in range(second_key):
                self.bytes -= self._packets.popleft().size

    @property
    def seconds(self) -> float:
        """Seconds of video held (oldest to newest stamp)."""
        with self._lock:
            if len(self._packets) < 2:
                return 0.0
            return (self._packets[-1].stamp_ns - self._packets[0].stamp_ns) / 1e9

    def select(self, start_ns: int, end_ns: int | None = None) -> list[EncodedPacket]:
        """Packets from the last keyframe at or before ``start_ns`` (the oldest keyframe when
        the ring does not reach back that far) up to ``end_ns`` (inclusive; None: all)."""
        with self._lock:
            packets = list(self._packets)
        first = 0
        for i, p in enumerate(packets):
            if p.stamp_ns > start_ns:
                break
            if p.keyframe:
                first = i
        selected = packets[first:]
        if end_ns is not None:
            selected = [p for p in selected if p.stamp_ns <= end_ns]
        return selected
