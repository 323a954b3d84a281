"""Multi-object tracking and counting on :class:`~edge_vision.core.detections.Detections`.

``create_tracker("iou")`` gives the dependency-free :class:`IouTracker`;
``create_tracker("bytetrack")`` gives :class:`ByteTracker` (needs ``supervision``).
Both return, per frame, the rows of the input that belong to a track with ``track_ids`` set.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from edge_vision.core.detections import Detections
from edge_vision.tracking.counting import (
    Counters,
    CounterSpec,
    CountResult,
    LineCounter,
    ZoneOccupancy,
    anchor_points,
    parse_counters,
)
from edge_vision.tracking.iou_tracker import IouTracker


@runtime_checkable
class Tracker(Protocol):
    def update(self, detections: Detections) -> Detections:
        """Associate one frame's detections; returns tracked rows with ``track_ids`` set."""
        ...

    def reset(self) -> None:
        """Forget all tracks and restart ids."""
        ...


def create_tracker(kind: str = "bytetrack", **params: Any) -> Tracker:
    """A tracker by name (``"iou"`` or ``"bytetrack"``); ``params`` go to its constructor."""
    if kind == "iou":
        return IouTracker(**params)
    if kind == "bytetrack":
        from edge_vision.tracking.bytetrack import ByteTracker

        return ByteTracker(**params)
    raise ValueError(f"unknown tracker {kind!r}; expected 'iou' or 'bytetrack'")


__all__ = [
    "CountResult",
    "CounterSpec",
    "Counters",
    "IouTracker",
    "LineCounter",
    "Tracker",
    "ZoneOccupancy",
    "anchor_points",
    "create_tracker",
    "parse_counters",
]
