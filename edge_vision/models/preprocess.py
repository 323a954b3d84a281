"""Input checks and label files shared by the models."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def as_bgr(image: np.ndarray) -> np.ndarray:
    """A uint8 HxWx3 BGR view or copy of a grey, BGR or BGRA uint8 image."""
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"expected HxW, HxWx3 or HxWx4 image, got shape {image.shape}")


def read_label_list(path: str | Path, expected: int, what: str) -> tuple[str, ...]:
    """Class names, one per non-empty line, in model output order; the files come from
    Debian's opencv-doc, so a missing one says which package to install."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: {what} label file missing (Debian: apt-get install opencv-doc)"
        )
    labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    labels = [line for line in labels if line]
    if len(labels) != expected:
        raise ValueError(f"{path}: {len(labels)} labels, expected {expected}")
    return tuple(labels)
