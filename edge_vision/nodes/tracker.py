"""tracker: stable track ids for detections, line-crossing counts and zone occupancy.

Topics: subscribes ``detections`` (vision_msgs/Detection2DArray) and ``labels``
(vision_msgs/LabelInfo, transient-local, optional: only needed for the ``classes`` filter);
publishes ``tracks`` (Detection2DArray: the detections that belong to a track, with
``Detection2D.id`` set to the track id, header copied from the input) and ``counts``
(edge_vision/CountArray: every line and zone, once per frame, while any is configured),
``/diagnostics``.

Tracking runs in the subscription callback: both trackers take well under a millisecond per
frame for tens of objects, so a worker thread would only add latency.

Changing ``tracker`` or its settings restarts the tracker (ids start again); changing ``lines``
or ``zones`` restarts the counters. A malformed entry is refused with a message naming it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from vision_msgs.msg import Detection2DArray, LabelInfo

from edge_vision.core.detections import Detections
from edge_vision.msg import Count, CountArray
from edge_vision.ros import diagnostics
from edge_vision.ros.conversions import detections_to_msg, labels_from_label_info, msg_to_detections
from edge_vision.ros.node_main import EdgeVisionNode, NodeConfigError, run_node
from edge_vision.ros.parameters import Param, ParameterBinding
from edge_vision.ros.qos import latched_qos
from edge_vision.tracking import Counters, Tracker, create_tracker, parse_counters


def _check_counters(kind: str) -> Callable[[list[str]], str | None]:
    def check(entries: list[str]) -> str | None:
        try:
            parse_counters(entries, kind)
        except ValueError as exc:
            return str(exc)
        return None

    return check


PARAMS = (
    Param("tracker", "bytetrack", "Tracking algorithm.", choices=("bytetrack", "iou")),
    Param(
        "track_activation_threshold",
        0.25,
        "bytetrack: detections scoring at least this start and confirm tracks.",
        range=(0.0, 1.0),
    ),
    Param(
        "lost_track_buffer",
        30,
        "Frames a lost track is kept for re-identification (bytetrack) / max_age (iou).",
        range=(0, 1000),
    ),
    Param(
        "match_threshold",
        0.8,
        "bytetrack: matching threshold (1 - IoU cost); iou: minimum IoU is 1 - this value.",
        range=(0.0, 1.0),
    ),
    Param("frame_rate", 30, "bytetrack: the stream's frame rate.", range=(1, 240)),
    Param(
        "min_hits",
        2,
        "Frames a track must be matched in before it gets an id and is published.",
        range=(1, 100),
    ),
    Param(
        "classes",
        [],
        "Only track these class names (empty = all; needs `labels`); [''] clears it.",
        list_type=str,
    ),
    Param(
        "lines",
        [],
        "Counting lines as 'NAME: x1,y1 x2,y2' (pixels). `in` counts crossings onto the "
        "right-hand side of x1,y1 -> x2,y2 as seen on screen.",
        validator=_check_counters("line"),
        list_type=str,
    ),
    Param(
        "zones",
        [],
        "Zones as 'NAME: x1,y1 x2,y2 x3,y3 ...' (pixels, 3+ points); occupancy counts tracked "
        "objects whose bottom-centre is inside.",
        validator=_check_counters("zone"),
        list_type=str,
    ),
)

_TRACKER_PARAMS = {
    "tracker",
    "track_activation_threshold",
    "lost_track_buffer",
    "match_threshold",
    "frame_rate",
    "min_hits",
}


class TrackerNode(EdgeVisionNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("tracker", **kwargs)
        try:
            self.params = ParameterBinding(self, PARAMS, on_change=self._on_params)
        except ValueError as exc:
            raise NodeConfigError(str(exc)) from exc
        self._lock = threading.Lock()  # the callback and parameter sets run in different threads
        self._labels: list[str] | None = None
        self._tracker = self._make_tracker()
        self._counters = self._make_counters()
        self._frames = 0
        self._tracked = 0
        self._time_s = 0.0
        self._tracks_pub = self.create_publisher(Detection2DArray, "tracks", 10)
        self._counts_pub = self.create_publisher(CountArray, "counts", 10)
        self.create_subscription(LabelInfo, "labels", self._on_labels, latched_qos())
        self.create_subscription(Detection2DArray, "detections", self._on_detections, 10)
        self._diag = diagnostics.DiagnosticsPublisher(self, self._status)

    def _make_tracker(self) -> Tracker:
        p = self.params
        if p["tracker"] == "iou":
            return create_tracker(
                "iou",
                iou_threshold=1.0 - p["match_threshold"],
                max_age=p["lost_track_buffer"],
                min_hits=p["min_hits"],
            )
        return create_tracker(
            "bytetrack",
            track_activation_threshold=p["track_activation_threshold"],
            lost_track_buffer=p["lost_track_buffer"],
            minimum_matching_threshold=p["match_threshold"],
            frame_rate=p["frame_rate"],
            minimum_consecutive_frames=p["min_hits"],
        )

    def _make_counters(self) -> Counters:
        return Counters(
            parse_counters(self.params["lines"], "line"),
            parse_counters(self.params["zones"], "zone"),
        )

    def _on_params(self, changed: Mapping[str, Any]) -> None:
        with self._lock:
            if _TRACKER_PARAMS & changed.keys():
                self._tracker = self._make_tracker()
                self.get_logger().info("tracker restarted: track ids start again")
            if {"lines", "zones"} & changed.keys():
                self._counters = self._make_counters()

    def _on_labels(self, msg: LabelInfo) -> None:
        self._labels = labels_from_label_info(msg)

    def _on_detections(self, msg: Detection2DArray) -> None:
        t0 = time.perf_counter()
        detections = msg_to_detections(msg, self._labels)
        detections = self._filter(detections)
        with self._lock:
            tracks = self._tracker.update(detections)
            results = self._counters.update(tracks) if len(self._counters) else []
        self._tracks_pub.publish(detections_to_msg(tracks, msg.header))
        if results:
            out = CountArray(header=msg.header)
            for r in results:
                out.counts.append(
                    Count(
                        name=r.name,
                        kind=Count.KIND_LINE if r.kind == "line" else Count.KIND_ZONE,
                        count_in=r.count_in,
                        count_out=r.count_out,
                        occupancy=r.occupancy,
                        track_ids=[str(t) for t in r.track_ids],
                    )
                )
            self._counts_pub.publish(out)
        self._frames += 1
        self._tracked += len(tracks)
        self._time_s += time.perf_counter() - t0

    def _filter(self, detections: Detections) -> Detections:
        allowed = {c for c in self.params["classes"] if c.strip()}
        if not allowed or len(detections) == 0:
            return detections
        labels = detections.labels or [str(int(c)) for c in detections.class_ids]
        return detections[np.array([label in allowed for label in labels], dtype=bool)]

    def _status(self) -> diagnostics.Status:
        per_frame_ms = 1000 * self._time_s / self._frames if self._frames else 0.0
        values = {
            "tracker": self.params["tracker"],
            "frames": self._frames,
            "tracked detections": self._tracked,
            "time per frame (ms)": per_frame_ms,
            "lines": len(self._counters.lines),
            "zones": len(self._counters.zones),
        }
        if self.params["classes"] and self._labels is None:
            return diagnostics.Status(diagnostics.WARN, "classes set but no labels yet", values)
        return diagnostics.Status(diagnostics.OK, f"{self._frames} frames", values)


def create_node(args: list[str]) -> TrackerNode:
    """Single-process launch hook (``edge-vision launch --single-process``)."""
    return TrackerNode(cli_args=args)


def main(args: list[str] | None = None) -> int:
    return run_node(TrackerNode, args, threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
