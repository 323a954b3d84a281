"""Cropping detection boxes out of a frame for a second-stage model (pure numpy).

A classifier wants the object centred with some context and an undistorted aspect ratio, so a
box is grown to a square of side ``max(w, h) * expand`` around its centre. Near the frame border
the square is *shifted* inwards rather than clipped, which keeps its size and aspect ratio (the
object is then off-centre, which classifiers tolerate far better than being squeezed). Only a
square larger than the frame along an axis is clipped, to the whole frame along that axis.
"""

from __future__ import annotations

import numpy as np

__all__ = ["crop_boxes", "crop_square", "crop_windows"]


def crop_windows(
    xyxy: np.ndarray,
    frame_size: tuple[int, int],
    expand: float = 1.0,
    square: bool = True,
    min_size: int = 1,
) -> np.ndarray:
    """Integer pixel windows ``(x0, y0, x1, y1)`` (end-exclusive), shape (N, 4), for N boxes.

    ``frame_size`` is (width, height). Each window is the box grown by ``expand`` about its
    centre (a square of side ``max(w, h) * expand`` when ``square``), at least ``min_size``
    pixels per side so a degenerate box still yields a non-empty crop, shifted to lie inside
    the frame, and clipped only along an axis where it is longer than the frame.
    """
    boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
    frame_w, frame_h = int(frame_size[0]), int(frame_size[1])
    if frame_w <= 0 or frame_h <= 0:
        raise ValueError(f"empty frame of size {frame_w}x{frame_h}")
    if not expand > 0:
        raise ValueError(f"expand must be > 0, got {expand}")
    if not np.isfinite(boxes).all():
        raise ValueError("boxes contain NaN or infinite coordinates")
    # An inverted box (x2 < x1) counts as zero-size rather than flipping the crop.
    w = np.clip(boxes[:, 2] - boxes[:, 0], 0, None)
    h = np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    if square:
        w = h = np.maximum(w, h)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    x0, x1 = _axis_window(cx, w * expand, frame_w, min_size)
    y0, y1 = _axis_window(cy, h * expand, frame_h, min_size)
    return np.stack([x0, y0, x1, y1], axis=1)


def _axis_window(
    centre: np.ndarray, length: np.ndarray, extent: int, min_size: int
) -> tuple[np.ndarray, np.ndarray]:
    size = np.maximum(np.floor(length + 0.5).astype(np.int64), max(1, min_size))
    size = np.minimum(size, extent)  # longer than the frame: the whole axis
    # Round half up (not numpy's half-to-even) so equal boxes map to equal windows everywhere.
    start = np.floor(centre - size / 2 + 0.5).astype(np.int64)
    start = np.clip(start, 0, extent - size)  # shift inwards, keeping the size
    return start, start + size


def crop_boxes(
    image: np.ndarray,
    xyxy: np.ndarray,
    expand: float = 1.0,
    square: bool = True,
    min_size: int = 1,
) -> list[np.ndarray]:
    """One crop per box (see :func:`crop_windows`), in box order.

    The crops are views into ``image``, not copies: copy them before the frame buffer is
    reused or written to.
    """
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC image, got shape {image.shape}")
    h, w = image.shape[:2]
    windows = crop_windows(xyxy, (w, h), expand, square, min_size)
    return [image[y0:y1, x0:x1] for x0, y0, x1, y1 in windows.tolist()]


def crop_square(image: np.ndarray, xyxy: np.ndarray, expand: float = 1.0) -> np.ndarray:
    """The square crop around one box ``(x1, y1, x2, y2)`` (a view; see :func:`crop_boxes`)."""
    box = np.asarray(xyxy, np.float64)
    if box.shape != (4,):
        raise ValueError(f"expected one box (x1, y1, x2, y2), got shape {box.shape}")
    return crop_boxes(image, box, expand, square=True)[0]
