"""The ``Event`` record, a ROS-free mirror of ``msg/Event.msg``."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

BBox = tuple[float, float, float, float]
ZERO_BOX: BBox = (0.0, 0.0, 0.0, 0.0)


class EventState(IntEnum):
    """Values match ``Event.STATE_*`` so that conversion to the message is a plain int()."""

    NEW = 0
    UPDATE = 1
    END = 2


@dataclass(slots=True)
class Event:
    """One event. Stamps are integer nanoseconds of the source image clock.

    ``end_ns`` is the stamp of the latest contributing frame (the message header stamp too);
    ``bbox`` is the latest box as (x1, y1, x2, y2) pixels, all zero for frame-level events.
    """

    id: str
    stream: str
    model: str
    label: str
    class_id: str
    score: float
    max_score: float
    begin_ns: int
    end_ns: int
    frames: int
    track_id: str = ""
    bbox: BBox = ZERO_BOX
    state: EventState = EventState.NEW
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.begin_ns) / 1e9  # exact for ms values; * 1e-9 is not

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: state by name (readable in exports), bbox as a list."""
        return {
            "id": self.id,
            "stream": self.stream,
            "model": self.model,
            "label": self.label,
            "class_id": self.class_id,
            "score": float(self.score),
            "max_score": float(self.max_score),
            "begin_ns": int(self.begin_ns),
            "end_ns": int(self.end_ns),
            "frames": int(self.frames),
            "track_id": self.track_id,
            "bbox": [float(v) for v in self.bbox],
            "state": self.state.name,
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        """Inverse of ``to_dict``; ``state`` may be a name or the integer value."""
        state = d.get("state", EventState.NEW)
        state = EventState[state] if isinstance(state, str) else EventState(int(state))
        bbox = d.get("bbox") or ZERO_BOX
        x1, y1, x2, y2 = (float(v) for v in bbox)
        return cls(
            id=str(d["id"]),
            stream=str(d.get("stream", "")),
            model=str(d.get("model", "")),
            label=str(d.get("label", "")),
            class_id=str(d.get("class_id", "")),
            score=float(d.get("score", 0.0)),
            max_score=float(d.get("max_score", 0.0)),
            begin_ns=int(d["begin_ns"]),
            end_ns=int(d["end_ns"]),
            frames=int(d.get("frames", 0)),
            track_id=str(d.get("track_id", "")),
            bbox=(x1, y1, x2, y2),
            state=state,
            attributes={str(k): str(v) for k, v in (d.get("attributes") or {}).items()},
        )
