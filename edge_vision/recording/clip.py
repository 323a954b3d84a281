"""Remux encoded packets (from :mod:`edge_vision.recording.prebuffer`) into a faststart MP4.

No re-encoding: the packets are copied into the file with their timestamps shifted so that the
first packet (a keyframe) is at 0. ``movflags=+faststart`` makes FFmpeg move the index (moov)
in front of the media data (mdat) when the file is closed, so a browser can start playing it
before it has the whole file. The caller writes to a temporary name and renames when
:meth:`Mp4ClipWriter.close` has returned (see :mod:`edge_vision.recording.storage`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import av

from edge_vision.recording.prebuffer import TIME_BASE, EncodedPacket

__all__ = ["Mp4ClipWriter", "top_level_boxes"]


class Mp4ClipWriter:
    """Write packets of one timeline to ``path``. Not thread-safe: one writer thread."""

    def __init__(self, path: str | Path, fps_hint: float = 30.0) -> None:
        self.path = Path(path)
        self._fps_hint = fps_hint
        self._container: av.container.OutputContainer | None = None
        self._stream = None
        self._origin_ticks: int | None = None
        self._last_ticks: int | None = None
        self._last_duration = 0
        self._timeline: int | None = None
        self.first: EncodedPacket | None = None
        self.last: EncodedPacket | None = None
        self.frames = 0
        self.keyframes = 0
        self.bytes_in = 0  # payload bytes muxed so far (the file is a little larger)

    def _open(self, first: EncodedPacket) -> None:
        if not first.keyframe:
            raise ValueError("a clip must start at a keyframe")
        # flush_packets: each packet goes to the file as it comes (FFmpeg otherwise holds them
        # in memory until close), so memory stays flat and a full disk shows at once.
        self._container = av.open(
            str(self.path),
            "w",
            format="mp4",
            options={"movflags": "+faststart", "flush_packets": "1"},
        )
        stream = self._container.add_mux_stream(
            "h264", rate=round(self._fps_hint) or 30, width=first.width, height=first.height
        )
        stream.time_base = TIME_BASE
        self._stream = stream
        self._origin_ticks = first.ticks
        self._timeline = first.timeline
        self._last_duration = round(90_000 / (self._fps_hint or 30.0))
        self.first = first

    def add(self, packet: EncodedPacket) -> None:
        if self._container is None:
            self._open(packet)
        assert self._container is not None and self._origin_ticks is not None
        if packet.timeline != self._timeline:
            raise ValueError("packets of another encoder timeline cannot join this clip")
        ticks = packet.ticks - self._origin_ticks
        if self._last_ticks is not None:
            if ticks <= self._last_ticks:
                return  # a duplicate (the same packet routed twice); never write it again
            self._last_duration = ticks - self._last_ticks
        out = av.Packet(packet.data)
        out.pts = out.dts = ticks
        out.time_base = TIME_BASE
        # The duration of the previous frame is the best guess for this one; it only matters
        # for the last frame, whose length the file cannot otherwise know.
        out.duration = self._last_duration
        out.is_keyframe = packet.keyframe
        out.stream = self._stream
        self._container.mux(out)
        self._last_ticks = ticks
        self.last = packet
        self.frames += 1
        self.keyframes += int(packet.keyframe)
        self.bytes_in += packet.size

    def close(self, fsync: bool = True) -> None:
        """Write the index (moov, moved to the front) and close; fsync the file if asked."""
        if self._container is None:
            raise ValueError(f"no frames were written to {self.path}")
        container, self._container = self._container, None
        container.close()
        if fsync:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def abort(self) -> None:
        """Close without caring whether it works (the file is deleted by the caller)."""
        container, self._container = self._container, None
        if container is not None:
            with contextlib.suppress(Exception):  # a full disk fails the close as well
                container.close()

    @property
    def duration_s(self) -> float:
        if self.first is None or self.last is None:
            return 0.0
        return (self.last.stamp_ns - self.first.stamp_ns) / 1e9


def top_level_boxes(path: str | Path) -> list[str]:
    """The types of an MP4 file's top-level boxes, in file order (``['ftyp', 'moov', ...]``)."""
    boxes = []
    with open(path, "rb") as f:
        size_total = os.fstat(f.fileno()).st_size
        offset = 0
        while offset + 8 <= size_total:
            f.seek(offset)
            header = f.read(16)
            size = int.from_bytes(header[:4], "big")
            kind = header[4:8].decode("latin-1")
            if size == 1:
                size = int.from_bytes(header[8:16], "big")
            elif size == 0:
                size = size_total - offset
            if size < 8:
                raise ValueError(f"{path}: bad box size {size} at offset {offset}")
            boxes.append(kind)
            offset += size
    return boxes
