"""Turn per-frame detections and classifications into NEW/UPDATE/END events.

Rules (one "key" per tracked object, per untracked label, or per classification key):

* A key is a *candidate* from its first frame. It becomes an event (NEW) once it was seen in
  ``min_frames`` frames; the frames need not be consecutive, but any gap longer than
  ``end_after_s`` drops the candidate silently (it never became an event), so sparse flicker
  does not add up to an event.
* After NEW, each frame that sees the key may emit UPDATE: at once when the max score rose
  since the last emitted message (if ``update_on_max_score``), otherwise once
  ``update_every_s`` passed since the last emitted message.
* END once the key was not seen for more than ``end_after_s`` (checked against the stamp of
  every ``update*`` call), or on ``flush()``. The END carries the stamp of the last frame seen.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from edge_vision.core.detections import Detections
from edge_vision.events.model import ZERO_BOX, BBox, Event, EventState

Key = tuple[str, str]


@dataclass(slots=True)
class _Track:
    label: str
    class_id: str
    track_id: str
    begin_ns: int
    last_ns: int
    score: float
    max_score: float
    bbox: BBox
    frames: int = 1
    event_id: str | None = None  # set when NEW was emitted
    emitted_ns: int = 0  # stamp of the last emitted message
    emitted_max: float = 0.0  # max_score in the last emitted message
    attributes: dict[str, str] = field(default_factory=dict)


class EventAggregator:
    """Stateful, single-threaded aggregator for one stream and model."""

    def __init__(
        self,
        stream: str,
        model: str,
        min_frames: int = 3,
        end_after_s: float = 1.0,
        update_every_s: float = 1.0,
        update_on_max_score: bool = True,
    ) -> None:
        if min_frames < 1:
            raise ValueError("min_frames must be >= 1")
        self.stream = stream
        self.model = model
        self.min_frames = min_frames
        self.end_after_ns = int(end_after_s * 1e9)
        self.update_every_ns = int(update_every_s * 1e9)
        self.update_on_max_score = update_on_max_score
        self._tracks: dict[Key, _Track] = {}

    @property
    def active(self) -> int:
        """Number of keys that emitted NEW and have not ended yet."""
        return sum(t.event_id is not None for t in self._tracks.values())

    def update(
        self,
        detections: Detections,
        stamp_ns: int,
        attributes: Mapping[str, str] | None = None,
    ) -> list[Event]:
        """Feed one frame's detections; returns the events this frame caused.

        Tracked detections (track id >= 0; -1 means untracked, as in the ROS conversion) are
        keyed by track id; untracked ones by label, so that each label present in the frame is
        one frame-level event with the best score of the frame and a zero bbox.
        """
        seen: dict[Key, tuple[str, str, str, float, BBox]] = {}
        n = len(detections)
        tids = detections.track_ids
        for i in range(n):
            cid = int(detections.class_ids[i])
            label = detections.labels[i] if detections.labels is not None else str(cid)
            score = float(detections.scores[i])
            if tids is not None and tids[i] >= 0:
                tid = str(int(tids[i]))
                x1, y1, x2, y2 = (float(v) for v in detections.xyxy[i])
                seen[("track", tid)] = (label, str(cid), tid, score, (x1, y1, x2, y2))
            else:
                key = ("label", label)
                prev = seen.get(key)
                if prev is None or score > prev[3]:
                    seen[key] = (label, str(cid), "", score, ZERO_BOX)
        out = self._expire(stamp_ns)
        for key, (label, cid, tid, score, bbox) in seen.items():
            ev = self._observe(key, label, cid, tid, score, bbox, stamp_ns, attributes)
            if ev is not None:
                out.append(ev)
        return out

    def update_classification(
        self,
        class_id: str | int,
        label: str,
        score: float,
        stamp_ns: int,
        key: str | None = None,
        attributes: Mapping[str, str] | None = None,
        track_id: str = "",
        bbox: BBox = ZERO_BOX,
    ) -> list[Event]:
        """Feed one classification (or action window); ``key`` defaults to the label, or to
        ``track_id/label`` for a per-object result (e.g. an action of one tracked person)."""
        out = self._expire(stamp_ns)
        if key is None:
            key = f"{track_id}/{label}" if track_id else label
        k = ("class", key)
        cid = str(class_id)
        ev = self._observe(k, label, cid, track_id, float(score), bbox, stamp_ns, attributes)
        if ev is not None:
            out.append(ev)
        return out

    def annotate(self, track_id: str, attributes: Mapping[str, str]) -> Event | None:
        """Merge ``attributes`` (e.g. the zone a track is in) into the open track's record.

        Returns an UPDATE when that changed an open event's attributes, so that rules on
        attributes see the change at once; otherwise None (an unknown track, a candidate not
        yet an event, or nothing new).
        """
        t = self._tracks.get(("track", track_id))
        if t is None or all(t.attributes.get(k) == v for k, v in attributes.items()):
            return None
        t.attributes.update(attributes)
        return self._emit(t, EventState.UPDATE) if t.event_id is not None else None

    def tracked_ids(self) -> list[str]:
        """Track ids with a candidate or an open event."""
        return [tid for kind, tid in self._tracks if kind == "track"]

    def tick(self, stamp_ns: int) -> list[Event]:
        """Only the END check, for frames with nothing to report (e.g. a timer)."""
        return self._expire(stamp_ns)

    def flush(self, stamp_ns: int | None = None) -> list[Event]:
        """END every open event (e.g. at shutdown) and forget all candidates.

        END keeps the last-seen stamp as ``end``; ``stamp_ns`` is accepted for symmetry with a
        caller's clock but an event never extends past its last frame.
        """
        del stamp_ns
        out = [self._end(t) for t in self._tracks.values() if t.event_id is not None]
        self._tracks.clear()
        return out

    def _expire(self, stamp_ns: int) -> list[Event]:
        out: list[Event] = []
        gone = [k for k, t in self._tracks.items() if stamp_ns - t.last_ns > self.end_after_ns]
        for k in gone:
            t = self._tracks.pop(k)
            if t.event_id is not None:
                out.append(self._end(t))
        return out

    def _observe(
        self,
        key: Key,
        label: str,
        class_id: str,
        track_id: str,
        score: float,
        bbox: BBox,
        stamp_ns: int,
        attributes: Mapping[str, str] | None,
    ) -> Event | None:
        t = self._tracks.get(key)
        if t is None:
            t = _Track(label, class_id, track_id, stamp_ns, stamp_ns, score, score, bbox)
            self._tracks[key] = t
        else:
            if stamp_ns <= t.last_ns:
                return None  # duplicate or out-of-order frame: counting it twice inflates frames
            t.frames += 1
            t.last_ns = stamp_ns
            t.label, t.class_id, t.score, t.bbox = label, class_id, score, bbox
            t.max_score = max(t.max_score, score)
        if attributes:
            t.attributes.update(attributes)
        if t.event_id is None:
            if t.frames < self.min_frames:
                return None
            t.event_id = uuid.uuid4().hex
            return self._emit(t, EventState.NEW)
        rose = self.update_on_max_score and t.max_score > t.emitted_max
        if rose or stamp_ns - t.emitted_ns >= self.update_every_ns:
            return self._emit(t, EventState.UPDATE)
        return None

    def _emit(self, t: _Track, state: EventState) -> Event:
        t.emitted_ns = t.last_ns
        t.emitted_max = t.max_score
        return self._event(t, state)

    def _end(self, t: _Track) -> Event:
        return self._event(t, EventState.END)

    def _event(self, t: _Track, state: EventState) -> Event:
        assert t.event_id is not None
        return Event(
            id=t.event_id,
            stream=self.stream,
            model=self.model,
            label=t.label,
            class_id=t.class_id,
            score=t.score,
            max_score=t.max_score,
            begin_ns=t.begin_ns,
            end_ns=t.last_ns,
            frames=t.frames,
            track_id=t.track_id,
            bbox=t.bbox,
            state=state,
            attributes=dict(t.attributes),
        )
