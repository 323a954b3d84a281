"""Overlays drawn in place on BGR images: detection boxes and pose skeletons (OpenCV only)."""

from __future__ import annotations

import colorsys
import functools

import cv2
import numpy as np

from edge_vision.core.detections import Detections
from edge_vision.core.poses import Poses

Color = tuple[int, int, int]

_SHIFT = 4  # sub-pixel bits for cv2 drawing: keypoints are float, and rounding jitters lines
_SCALE = 1 << _SHIFT
_FONT = cv2.FONT_HERSHEY_SIMPLEX

# Body: the person's left side warm, right side cool, the rest white.
_LEFT: Color = (0, 165, 255)
_RIGHT: Color = (255, 191, 0)
_MIDDLE: Color = (255, 255, 255)
# Hands: one colour per finger, palm grey.
_FINGER_COLORS: dict[str, Color] = {
    "thumb": (0, 0, 255),
    "index_finger": (0, 200, 255),
    "middle_finger": (0, 220, 0),
    "ring_finger": (255, 128, 0),
    "pinky": (255, 0, 200),
}
_PALM: Color = (200, 200, 200)


@functools.lru_cache(maxsize=1024)
def class_color(class_id: int) -> Color:
    """A stable, well-separated BGR colour for a class id (same id, same colour, every run)."""
    # Golden-ratio hue steps keep neighbouring ids far apart on the colour wheel.
    hue = (int(class_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


def _check_image(image: np.ndarray) -> None:
    # cv2 silently draws on a temporary copy of non-contiguous or read-only arrays.
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a BGR uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    if not image.flags.c_contiguous or not image.flags.writeable:
        raise ValueError("image must be C-contiguous and writeable to draw on it in place")


def _keypoint_color(name: str, kind: str) -> Color:
    if kind == "hand":
        for finger, color in _FINGER_COLORS.items():
            if name.startswith(finger):
                return color
        return _PALM
    if name.startswith("left") or name.endswith("left"):
        return _LEFT
    if name.startswith("right") or name.endswith("right"):
        return _RIGHT
    return _MIDDLE


@functools.lru_cache(maxsize=64)
def _layout_colors(
    kind: str, names: tuple[str, ...], skeleton: tuple[tuple[int, int], ...]
) -> tuple[tuple[Color, ...], tuple[Color, ...]]:
    point_colors = tuple(_keypoint_color(n, kind) for n in names)
    # An edge takes the colour its two ends share (a limb, a finger), else the neutral one.
    neutral = _PALM if kind == "hand" else _MIDDLE
    edge_colors = tuple(
        point_colors[a] if point_colors[a] == point_colors[b] else neutral for a, b in skeleton
    )
    return point_colors, edge_colors


def draw_poses(
    image: np.ndarray,
    poses: Poses,
    min_score: float = 0.5,
    radius: int = 3,
    thickness: int = 2,
) -> np.ndarray:
    """Draw skeleton lines and keypoint dots of ``poses`` on ``image`` (BGR, in place).

    Keypoints scoring below ``min_score`` and the lines touching them are skipped. Returns
    ``image``.
    """
    _check_image(image)
    if len(poses) == 0:
        return image
    point_colors, edge_colors = _layout_colors(poses.kind, poses.keypoint_names, poses.skeleton)
    # Fixed-point coordinates; clipping keeps far extrapolated points inside int32.
    limit = 8 * max(image.shape[:2])
    pts = np.rint(np.clip(poses.keypoints, -limit, limit) * _SCALE)
    pts = np.nan_to_num(pts, nan=-limit * _SCALE).astype(np.int32)
    ok = (poses.scores >= min_score) & np.isfinite(poses.keypoints).all(axis=2)
    for p in range(len(poses)):
        xy = pts[p].tolist()
        good = ok[p].tolist()
        for (a, b), color in zip(poses.skeleton, edge_colors, strict=True):
            if good[a] and good[b]:
                cv2.line(image, xy[a], xy[b], color, thickness, cv2.LINE_AA, _SHIFT)
        r = radius * _SCALE
        for i, color in enumerate(point_colors):
            if good[i]:
                cv2.circle(image, xy[i], r, color, -1, cv2.LINE_AA, _SHIFT)
    return image


def draw_detections(
    image: np.ndarray,
    detections: Detections,
    labels: bool = True,
    thickness: int = 2,
    font_scale: float = 0.5,
) -> np.ndarray:
    """Draw boxes (one colour per class id) and, with ``labels``, "name score" tags.

    The tag shows the class name when ``detections.labels`` is set (else the class id) and
    ``#track`` when tracked. Draws on ``image`` (BGR) in place and returns it.
    """
    _check_image(image)
    w = image.shape[1]
    boxes = np.rint(np.clip(detections.xyxy, -w, 2 * w)).astype(np.int32).tolist()
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        color = class_color(int(detections.class_ids[i]))
        cv2.rectangle(image, (x1, y1), (x2, y2), color, thickness, cv2.LINE_8)
        if not labels:
            continue
        name = detections.labels[i] if detections.labels else str(int(detections.class_ids[i]))
        text = f"{name} {detections.scores[i]:.2f}"
        if detections.track_ids is not None:
            text += f" #{int(detections.track_ids[i])}"
        (tw, th), base = cv2.getTextSize(text, _FONT, font_scale, 1)
        # Tag above the box, or inside its top edge when the box touches the image top.
        tx = min(max(x1, 0), max(w - tw - 2, 0))
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else max(y1, 0) + th + 2
        cv2.rectangle(image, (tx, ty - th - 2), (tx + tw + 2, ty + base), color, -1)
        # Black or white text, whichever reads better on the tag colour.
        luma = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
        ink = (0, 0, 0) if luma > 140 else (255, 255, 255)
        cv2.putText(image, text, (tx + 1, ty), _FONT, font_scale, ink, 1, cv2.LINE_AA)
    return image
