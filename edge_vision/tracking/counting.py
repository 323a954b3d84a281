"""Line-crossing counts and zone occupancy from tracked detections.

:class:`Counters` holds the named lines and zones of one camera, configured with the text form
used by the tracker node's ``lines`` / ``zones`` parameters (:func:`parse_counter`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_vision.core.detections import Detections


def anchor_points(detections: Detections) -> np.ndarray:
    """Bottom-centre of each box, shape (N, 2): where a walker's feet touch the ground."""
    xyxy = detections.xyxy
    return np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, xyxy[:, 3]], axis=1)


def _track_ids(detections: Detections) -> np.ndarray:
    if detections.track_ids is None:
        raise ValueError("detections have no track_ids; run a tracker first")
    return detections.track_ids


class LineCounter:
    """Counts tracks whose anchor crosses the segment ``p1 -> p2``.

    ``in`` is a crossing onto the right-hand side of ``p1 -> p2`` as seen on screen (image
    y points down), e.g. moving downward across a left-to-right line; ``out`` is the reverse.
    A crossing counts only where the anchor's path passes through the segment itself, not
    its extension. Touching the line is not a crossing: an anchor exactly on the line keeps
    the side it came from, so a track that touches and returns is not counted, and one that
    stops on the line and then goes on is counted once. Each crossing is counted once, so a
    track's counts alternate in/out. Tracks unseen for ``max_missing`` updates are forgotten.
    """

    def __init__(
        self,
        p1: Sequence[float],
        p2: Sequence[float],
        max_missing: int = 30,
    ) -> None:
        self.p1 = np.asarray(p1, np.float64).reshape(2)
        self.p2 = np.asarray(p2, np.float64).reshape(2)
        if np.allclose(self.p1, self.p2):
            raise ValueError("line end points must differ")
        self.max_missing = max_missing
        self.in_count = 0
        self.out_count = 0
        self.crossed: list[int] = []
        """Track ids that crossed in the last :meth:`update`."""
        # track id -> (last anchor strictly off the line, its side (+1/-1), frames unseen)
        self._last: dict[int, tuple[np.ndarray, int, int]] = {}

    def _side(self, pts: np.ndarray) -> np.ndarray:
        d = self.p2 - self.p1
        cross = d[0] * (pts[:, 1] - self.p1[1]) - d[1] * (pts[:, 0] - self.p1[0])
        return np.sign(cross).astype(int)

    def _within_segment(self, a: np.ndarray, b: np.ndarray) -> bool:
        # Where the path a->b meets the infinite line, and whether that lies between p1 and p2.
        d = self.p2 - self.p1
        ca = d[0] * (a[1] - self.p1[1]) - d[1] * (a[0] - self.p1[0])
        cb = d[0] * (b[1] - self.p1[1]) - d[1] * (b[0] - self.p1[0])
        hit = a + (b - a) * (ca / (ca - cb))
        t = float(np.dot(hit - self.p1, d) / np.dot(d, d))
        return 0.0 <= t <= 1.0

    def update(self, detections: Detections) -> tuple[int, int]:
        """Feed one frame; returns (new ``in`` crossings, new ``out`` crossings) this frame."""
        ids = _track_ids(detections)
        pts = anchor_points(detections).astype(np.float64)
        sides = self._side(pts)
        new_in = new_out = 0
        self.crossed = []
        seen: set[int] = set()
        for tid, pt, side in zip(ids.tolist(), pts, sides.tolist(), strict=True):
            seen.add(tid)
            prev = self._last.get(tid)
            if side == 0:
                if prev is not None:
                    self._last[tid] = (prev[0], prev[1], 0)
                continue
            if prev is not None and prev[1] != side and self._within_segment(prev[0], pt):
                self.crossed.append(tid)
                if side > 0:
                    new_in += 1
                else:
                    new_out += 1
            self._last[tid] = (pt, side, 0)
        for tid in list(self._last):
            if tid not in seen:
                pt, side, missing = self._last[tid]
                if missing + 1 > self.max_missing:
                    del self._last[tid]
                else:
                    self._last[tid] = (pt, side, missing + 1)
        self.in_count += new_in
        self.out_count += new_out
        return new_in, new_out


class ZoneOccupancy:
    """Which tracks have their anchor inside a polygon (edges count as inside)."""

    def __init__(self, polygon: Sequence[Sequence[float]]) -> None:
        self.polygon = np.asarray(polygon, np.float32).reshape(-1, 1, 2)
        if len(self.polygon) < 3:
            raise ValueError("a zone polygon needs at least 3 points")

    def update(self, detections: Detections) -> np.ndarray:
        """Sorted track ids inside the zone in this frame."""
        ids = _track_ids(detections)
        inside = [
            tid
            for tid, (x, y) in zip(ids.tolist(), anchor_points(detections).tolist(), strict=True)
            if cv2.pointPolygonTest(self.polygon, (float(x), float(y)), False) >= 0
        ]
        return np.array(sorted(inside), np.int64)


@dataclass(frozen=True)
class CounterSpec:
    """A named line (2 points) or zone (3+ points), in image pixels."""

    name: str
    points: tuple[tuple[float, float], ...]


def parse_counter(text: str, kind: str) -> CounterSpec:
    """Parse ``"NAME: x1,y1 x2,y2 ..."``; ``kind`` is ``"line"`` (exactly 2 points) or ``"zone"``
    (3 or more). Raises ValueError naming the entry and what is wrong."""
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not sep or not name:
        raise ValueError(f"{kind} {text!r}: expected 'NAME: x1,y1 x2,y2 ...'")
    points: list[tuple[float, float]] = []
    for token in rest.split():
        xs, comma, ys = token.partition(",")
        try:
            if not comma:
                raise ValueError
            points.append((float(xs), float(ys)))
        except ValueError:
            raise ValueError(f"{kind} {name!r}: point {token!r} is not x,y") from None
    if kind == "line" and len(points) != 2:
        raise ValueError(f"line {name!r}: needs exactly 2 points, got {len(points)}")
    if kind == "zone" and len(points) < 3:
        raise ValueError(f"zone {name!r}: needs at least 3 points, got {len(points)}")
    if kind == "line" and points[0] == points[1]:
        raise ValueError(f"line {name!r}: end points must differ")
    return CounterSpec(name, tuple(points))


def parse_counters(entries: Sequence[str], kind: str) -> list[CounterSpec]:
    """Several entries (empty strings skipped); names must be unique."""
    specs = [parse_counter(e, kind) for e in entries if e.strip()]
    names = [s.name for s in specs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"{kind} names must be unique; repeated: {', '.join(sorted(dup))}")
    return specs


@dataclass
class CountResult:
    """One counter after one frame (see msg/Count.msg)."""

    name: str
    kind: str  # "line" or "zone"
    count_in: int = 0
    count_out: int = 0
    occupancy: int = 0
    track_ids: list[int] = field(default_factory=list)


class Counters:
    """The lines and zones of one camera, updated together once per frame."""

    def __init__(
        self,
        lines: Sequence[CounterSpec] = (),
        zones: Sequence[CounterSpec] = (),
        max_missing: int = 30,
    ) -> None:
        self.lines = {s.name: LineCounter(*s.points, max_missing=max_missing) for s in lines}
        self.zones = {s.name: ZoneOccupancy(s.points) for s in zones}

    def __len__(self) -> int:
        return len(self.lines) + len(self.zones)

    def update(self, detections: Detections) -> list[CountResult]:
        out: list[CountResult] = []
        for name, line in self.lines.items():
            line.update(detections)
            out.append(
                CountResult(name, "line", line.in_count, line.out_count, 0, list(line.crossed))
            )
        for name, zone in self.zones.items():
            inside = zone.update(detections).tolist()
            out.append(CountResult(name, "zone", occupancy=len(inside), track_ids=inside))
        return out
