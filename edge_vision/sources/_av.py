"""PyAV helpers shared by the file and live sources: frame conversion and error wording."""

from __future__ import annotations

from fractions import Fraction

import av
import av.error
import cv2
import numpy as np

_BT709 = 1  # AVColorSpace value; OpenCV's I420 conversion is BT.601 only.


def to_bgr(frame: av.VideoFrame) -> np.ndarray:
    """Convert a decoded frame to a contiguous H x W x 3 uint8 BGR array.

    For the common limited-range BT.601 yuv420p case, OpenCV's converter is about four times
    faster than libswscale (measured 1450 vs 380 frames/s at 768x576, within 1 grey level on
    average); everything else goes through swscale, which handles every pixel format and
    colour space correctly.
    """
    if (
        frame.format.name == "yuv420p"
        and frame.width % 2 == 0
        and frame.height % 2 == 0
        and frame.colorspace != _BT709
    ):
        planes = frame.to_ndarray(format="yuv420p")
        return cv2.cvtColor(planes, cv2.COLOR_YUV2BGR_I420)
    return frame.to_ndarray(format="bgr24")


def stream_fps(stream: av.video.stream.VideoStream) -> float | None:
    """The stream's declared frame rate, or None when the container does not say."""
    for rate in (stream.average_rate, stream.base_rate, stream.guessed_rate):
        if rate and isinstance(rate, Fraction | int) and float(rate) > 0:
            return float(rate)
    return None


def describe_av_error(exc: BaseException) -> str:
    """FFmpeg's reason without the errno number and repeated file name PyAV adds."""
    reason = getattr(exc, "strerror", None)
    if isinstance(reason, str) and reason:
        return reason
    return str(exc) or type(exc).__name__


def is_timeout(exc: BaseException) -> bool:
    """True when FFmpeg gave up waiting (socket timeout or PyAV's interrupt timeout)."""
    return isinstance(exc, av.error.TimeoutError | av.error.ExitError | TimeoutError)
