"""Synthetic frames: deterministic moving test patterns, no media files needed."""

from __future__ import annotations

import functools
import time

import av
import av.error
import cv2
import numpy as np

from edge_vision.core.frame import Frame
from edge_vision.sources._av import describe_av_error, to_bgr
from edge_vision.sources.base import SourceOpenError, VideoSource

PATTERNS: tuple[str, ...] = ("pattern", "testsrc2")

# A row of black/white blocks at the bottom of the "pattern" frames carries the frame index
# (and optionally a wall-clock time) so that a receiver can read them back after lossy
# encoding: the RTSP tests use this to check continuity and to measure latency.
CODE_BITS = 32
_CODE_ROWS = 2
_MIN_CODE_WIDTH = 128

_BARS_BGR = np.array(
    [
        (255, 255, 255),
        (0, 255, 255),
        (255, 255, 0),
        (0, 255, 0),
        (255, 0, 255),
        (0, 0, 255),
        (255, 0, 0),
        (0, 0, 0),
    ],
    dtype=np.uint8,
)


@functools.lru_cache(maxsize=8)
def _background(width: int, height: int) -> np.ndarray:
    # Built once per size: colour bars over the top half, a grey ramp below.
    image = np.empty((height, width, 3), dtype=np.uint8)
    columns = (np.arange(width) * len(_BARS_BGR) // width).astype(np.intp)
    image[: height // 2] = _BARS_BGR[columns][None, :, :]
    ramp = (np.arange(width) * 255 // max(width - 1, 1)).astype(np.uint8)
    image[height // 2 :] = ramp[None, :, None]
    image.setflags(write=False)
    return image


def _code_geometry(width: int, height: int) -> tuple[int, int, int]:
    """(block width, block height, top row) of the code strip; block width 0 = no strip."""
    block_w = width // CODE_BITS
    block_h = max(4, min(16, height // 16))
    if width < _MIN_CODE_WIDTH or height < 4 * _CODE_ROWS * block_h:
        return 0, 0, 0
    return block_w, block_h, height - _CODE_ROWS * block_h


def render_pattern(
    index: int, width: int, height: int, *, stamp_ms: int | None = None
) -> np.ndarray:
    """Frame ``index`` of the moving test pattern as H x W x 3 BGR; same inputs, same pixels.

    Colour bars and a grey ramp, a bright square that moves diagonally by 8 px per frame,
    the frame number as text, and (when the frame is at least 128 px wide) two rows of
    32 black/white blocks at the bottom: the index and ``stamp_ms`` (both modulo 2**32),
    readable with ``read_pattern_code``.
    """
    image = _background(width, height).copy()
    side = max(8, min(width, height) // 6)
    travel_x, travel_y = max(width - side, 1), max(height - side, 1)
    x = (index * 8) % (2 * travel_x)
    y = (index * 6) % (2 * travel_y)
    # Bounce off the edges so motion is continuous.
    x = x if x < travel_x else 2 * travel_x - x
    y = y if y < travel_y else 2 * travel_y - y
    image[y : y + side, x : x + side] = (64, 200, 255)
    scale = max(0.4, height / 480)
    thickness = max(1, round(2 * scale))
    text = f"#{index:06d}"
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    cv2.rectangle(image, (4, 4), (12 + tw, 12 + th + base), (0, 0, 0), cv2.FILLED)
    cv2.putText(
        image,
        text,
        (8, 8 + th),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (255, 255, 255),
        thickness,
        cv2.LINE_AA,
    )
    block_w, block_h, top = _code_geometry(width, height)
    if block_w:
        for row, value in enumerate((index, stamp_ms or 0)):
            y0 = top + row * block_h
            for bit in range(CODE_BITS):
                on = (value >> (CODE_BITS - 1 - bit)) & 1
                image[y0 : y0 + block_h, bit * block_w : (bit + 1) * block_w] = 255 if on else 0
    return image


def read_pattern_code(image: np.ndarray) -> tuple[int, int] | None:
    """Read back ``(index, stamp_ms)`` (modulo 2**32) from a pattern frame, even after lossy
    compression; None if the frame is too small to carry the code."""
    height, width = image.shape[:2]
    block_w, block_h, top = _code_geometry(width, height)
    if not block_w:
        return None
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    values = []
    for row in range(_CODE_ROWS):
        # Sample block centres, away from edges the encoder blurs.
        cy = top + row * block_h + block_h // 2
        value = 0
        for bit in range(CODE_BITS):
            cx = bit * block_w + block_w // 2
            patch = gray[cy - 1 : cy + 2, max(cx - 1, 0) : cx + 2]
            value = (value << 1) | int(patch.mean() > 127)
        values.append(value)
    return values[0], values[1]


class TestPatternSource(VideoSource):
    """An endless (or ``limit``-frame) synthetic video; it never paces itself.

    ``pattern="pattern"`` (default) draws ``render_pattern(index, ...)``: deterministic, so
    tests can compare pixels, and with the index readable back from the image.
    ``pattern="testsrc2"`` decodes FFmpeg's lavfi ``testsrc2`` generator through PyAV instead
    (also deterministic; exercises the PyAV decode path without a file).

    ``fps`` sets ``nominal_fps`` and ``source_pts = index / fps``; frames are produced as fast
    as they are read.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        *,
        width: int = 640,
        height: int = 480,
        fps: float = 30.0,
        pattern: str = "pattern",
        limit: int | None = None,
    ) -> None:
        super().__init__()
        if width < 16 or height < 16 or width > 8192 or height > 8192:
            raise SourceOpenError(f"test pattern size must be 16..8192 px, got {width}x{height}")
        if fps <= 0:
            raise SourceOpenError(f"test pattern fps must be positive, got {fps}")
        if pattern not in PATTERNS:
            raise SourceOpenError(
                f"unknown test pattern {pattern!r}; choose one of: {', '.join(PATTERNS)}"
            )
        if limit is not None and limit < 0:
            raise SourceOpenError(f"test pattern limit must be >= 0, got {limit}")
        self._width = width
        self._height = height
        self._fps = float(fps)
        self._pattern = pattern
        self._limit = limit
        self._index = 0
        self._container: av.container.InputContainer | None = None
        self._decoder = None

    @property
    def description(self) -> str:
        return f"test {self._pattern} {self._width}x{self._height} @ {self._fps:g} fps"

    @property
    def nominal_fps(self) -> float | None:
        return self._fps

    @property
    def size(self) -> tuple[int, int] | None:
        return (self._width, self._height)

    def _open(self) -> None:
        self._index = 0
        if self._pattern == "testsrc2":
            graph = f"testsrc2=size={self._width}x{self._height}:rate={self._fps:g}"
            try:
                self._container = av.open(graph, format="lavfi")
            except av.error.FFmpegError as exc:
                raise SourceOpenError(
                    f"cannot start FFmpeg testsrc2 ({graph}): {describe_av_error(exc)}"
                ) from None
            self._decoder = self._container.decode(video=0)

    def _read(self) -> Frame | None:
        if self._limit is not None and self._index >= self._limit:
            return None
        if self._decoder is not None:
            av_frame = next(self._decoder, None)
            if av_frame is None:
                return None
            image = to_bgr(av_frame)
        else:
            image = render_pattern(self._index, self._width, self._height)
        frame = Frame(
            image=image,
            stamp_ns=time.time_ns(),
            index=self._index,
            source_pts=self._index / self._fps,
        )
        self._index += 1
        return frame

    def _close(self) -> None:
        self._decoder = None
        if self._container is not None:
            self._container.close()
            self._container = None
