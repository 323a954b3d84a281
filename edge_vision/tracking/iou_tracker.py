"""A minimal IoU tracker: associate each frame's boxes to the previous frame's tracks by overlap.

No motion model, so it suits frame rates where an object's boxes in consecutive frames
overlap well (IoU above ``iou_threshold``); use ByteTrack for anything harder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_vision.core.detections import Detections, box_iou

UNCONFIRMED = -1  # track id given to rows of tracks that have not yet reached ``min_hits``


def greedy_match(cost_iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, col) taken in order of decreasing IoU, each row/col at most once."""
    if cost_iou.size == 0:
        return []
    rows, cols = np.nonzero(cost_iou >= threshold)
    order = np.argsort(-cost_iou[rows, cols], kind="stable")
    used_r: set[int] = set()
    used_c: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            pairs.append((r, c))
    return pairs


@dataclass(slots=True)
class _Track:
    box: np.ndarray
    class_id: int
    hits: int = 1
    missed: int = 0  # consecutive frames without a matching detection
    track_id: int = UNCONFIRMED


class IouTracker:
    """Greedy per-class IoU association.

    A track is *confirmed* once it has been matched in ``min_hits`` frames (the creating
    frame counts), and is given its id then, so ids are not wasted on one-frame false
    positives. It ends after ``max_age`` consecutive frames without a match.

    :meth:`update` returns the input rows that belong to confirmed tracks, with
    ``track_ids`` set; with ``output_unconfirmed=True`` it returns every input row instead,
    unconfirmed ones carrying ``UNCONFIRMED`` (-1).
    """

    def __init__(
        self,
        iou_threshold: float = 0.3,
        max_age: int = 5,
        min_hits: int = 2,
        output_unconfirmed: bool = False,
    ) -> None:
        if min_hits < 1 or max_age < 0:
            raise ValueError("min_hits must be >= 1 and max_age >= 0")
        self.iou_threshold = iou_threshold
        self.max_age = max_age
        self.min_hits = min_hits
        self.output_unconfirmed = output_unconfirmed
        self._tracks: list[_Track] = []
        self._next_id = 1

    def reset(self) -> None:
        self._tracks = []
        self._next_id = 1

    def update(self, detections: Detections) -> Detections:
        n = len(detections)
        row_track: list[_Track | None] = [None] * n
        matched: set[int] = set()
        for cls in np.unique(detections.class_ids):
            rows = np.flatnonzero(detections.class_ids == cls)
            tracks = [i for i, t in enumerate(self._tracks) if t.class_id == cls]
            if not tracks:
                continue
            ious = box_iou(detections.xyxy[rows], np.stack([self._tracks[i].box for i in tracks]))
            for r, c in greedy_match(ious, self.iou_threshold):
                row_track[rows[r]] = self._tracks[tracks[c]]
                matched.add(tracks[c])

        survivors: list[_Track] = []
        for i, t in enumerate(self._tracks):
            if i in matched:
                continue
            t.missed += 1
            if t.missed <= self.max_age:
                survivors.append(t)
        for row in range(n):
            t = row_track[row]
            if t is None:
                t = _Track(detections.xyxy[row].copy(), int(detections.class_ids[row]))
                row_track[row] = t
            else:
                t.box = detections.xyxy[row].copy()
                t.hits += 1
                t.missed = 0
            if t.track_id == UNCONFIRMED and t.hits >= self.min_hits:
                t.track_id = self._next_id
                self._next_id += 1
            survivors.append(t)
        self._tracks = survivors

        ids = np.array([t.track_id for t in row_track if t is not None], np.int64)
        keep = np.ones(n, bool) if self.output_unconfirmed else ids != UNCONFIRMED
        out = detections[keep]
        out.track_ids = ids[keep]
        return out
