"""The detection result type shared by detectors, trackers and publishers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(eq=False, slots=True)
class Detections:
    """N detected boxes as parallel numpy arrays (one row per detection).

    ``xyxy`` holds pixel corners (x1, y1, x2, y2) in the image the detector was given.
    ``track_ids`` is filled by a tracker; ``labels`` are the class names, when known.
    Indexing with a boolean mask, an index array or a slice returns a new ``Detections``.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    track_ids: np.ndarray | None = None
    labels: list[str] | None = None

    def __post_init__(self) -> None:
        # Normalise dtypes/shapes once here so that consumers never have to.
        self.xyxy = np.asarray(self.xyxy, np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.scores = np.asarray(self.scores, np.float32).reshape(n)
        self.class_ids = np.asarray(self.class_ids, np.int32).reshape(n)
        if self.track_ids is not None:
            self.track_ids = np.asarray(self.track_ids, np.int64).reshape(n)
        if self.labels is not None:
            self.labels = list(self.labels)
            if len(self.labels) != n:
                raise ValueError(f"{len(self.labels)} labels for {n} detections")

    @classmethod
    def empty(cls, with_labels: bool = False) -> Detections:
        """No detections (``labels`` is an empty list when ``with_labels``)."""
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.int32),
            labels=[] if with_labels else None,
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | Sequence[int] | slice | int) -> Detections:
        rows = row_indices(index, len(self), "detections")
        return Detections(
            self.xyxy[rows],
            self.scores[rows],
            self.class_ids[rows],
            None if self.track_ids is None else self.track_ids[rows],
            None if self.labels is None else [self.labels[i] for i in rows],
        )

    @property
    def area(self) -> np.ndarray:
        """Box areas in square pixels, shape (N,)."""
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{self.labels[i] if self.labels else int(self.class_ids[i])}:{self.scores[i]:.2f}"
            for i in range(min(len(self), 5))
        )
        more = ", ..." if len(self) > 5 else ""
        return f"Detections(n={len(self)}: {shown}{more})"


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def row_indices(
    index: np.ndarray | Sequence[int] | slice | int, length: int, what: str = "rows"
) -> np.ndarray:
    """Row numbers selected by an int, a slice, an index array or a boolean mask over
    ``length`` rows. An int selects a one-row set, so indexed arrays keep their rank."""
    if isinstance(index, (int, np.integer)):
        return np.array([int(index)], np.intp)
    if isinstance(index, slice):
        return np.arange(length)[index]
    rows = np.asarray(index)
    if rows.dtype == np.bool_:
        if rows.shape != (length,):
            raise IndexError(f"mask of shape {rows.shape} for {length} {what}")
        rows = np.flatnonzero(rows)
    return rows.astype(np.intp, copy=False).reshape(-1)
