"""Write BGR frames to an H.264 MP4 with PyAV, timed by the frames' own stamps.

The file is fragmented MP4 (``frag_keyframe+empty_moov``, a keyframe every second, packets
flushed as they come): all but the last second written before a crash or a kill stays playable,
which a plain MP4 (index written at close) does not give.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

_TIME_BASE = Fraction(1, 1000)  # pts in milliseconds since the first frame


class Mp4Writer:
    def __init__(self, path: str | Path, fps_hint: float = 30.0, preset: str = "ultrafast") -> None:
        self.path = Path(path)
        self._fps_hint = fps_hint
        self._preset = preset
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._first_ns: int | None = None
        self._last_pts = -1
        self.frames = 0

    def write(self, bgr: np.ndarray, stamp_ns: int) -> None:
        """Append one frame; frames of another size than the first are resized by the encoder's
        scaler, and a stamp that does not advance is nudged forward by 1 ms."""
        if self._container is None:
            self._open(bgr.shape[1], bgr.shape[0])
        assert self._stream is not None and self._container is not None
        if self._first_ns is None:
            self._first_ns = stamp_ns
        pts = max((stamp_ns - self._first_ns) // 1_000_000, self._last_pts + 1)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
        if (frame.width, frame.height) != (self._stream.width, self._stream.height):
            frame = frame.reformat(self._stream.width, self._stream.height)
        frame.pts = pts
        frame.time_base = _TIME_BASE
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self._last_pts = pts
        self.frames += 1

    def _open(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(
            str(self.path),
            "w",
            options={"movflags": "frag_keyframe+empty_moov", "flush_packets": "1"},
        )
        rate = round(self._fps_hint) or 30
        stream = self._container.add_stream("libx264", rate=rate)
        stream.gop_size = rate  # one fragment per second: what a crash can lose
        stream.width, stream.height = width - width % 2, height - height % 2  # yuv420p: even
        stream.pix_fmt = "yuv420p"
        stream.time_base = _TIME_BASE
        stream.options = {"preset": self._preset, "tune": "zerolatency"}
        self._stream = stream

    def close(self) -> None:
        if self._container is None:
            return
        assert self._stream is not None
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None
