"""event_aggregator: per-frame results become events, stored in SQLite and published.

Topics: subscribes ``detections`` (vision_msgs/Detection2DArray, usually the tracker's
``tracks``: tracked objects become one event per track, untracked detections one event per label)
with ``labels`` (LabelInfo), ``classification`` (vision_msgs/Classification, top-1 above
``classification_threshold``) with ``classification_labels``, and ``action_windows``
(edge_vision/ActionWindow, top-1 above ``action_threshold``; per-track windows keep their track)
with ``action_labels``; and the tracker's ``counts`` (edge_vision/CountArray), which become
attributes of the tracked objects' events: ``zone`` (comma-separated names of the zones the
object is in now, empty when none) and ``line.<name>`` = ``crossed`` once it crossed that line;
a change publishes an UPDATE at once, so rules can act on zones. Publishes ``events``
(edge_vision/Event, reliable, on NEW, throttled UPDATE and END), ``/diagnostics``.
Services: ``~/query`` (edge_vision/srv/QueryEvents).

Every event message is committed to the database before it is published, so a subscriber (or
an action it triggers) never sees an event the store does not have, and a crash loses nothing
that was announced. Each input kind has its own aggregator (detection, classification and action
events carry different ``model`` names). A timer ends events whose object stopped being seen
even when no more messages arrive (the source went quiet or stopped), extrapolating the source
clock from the last frame stamp. At shutdown every open event is ended and stored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from vision_msgs.msg import Classification, Detection2DArray, LabelInfo

from edge_vision.events import Event, EventAggregator, EventStore, default_database
from edge_vision.msg import ActionWindow, Count, CountArray
from edge_vision.msg import Event as EventMsg
from edge_vision.ros import diagnostics
from edge_vision.ros.conversions import (
    event_to_msg,
    labels_from_label_info,
    msg_to_detections,
)
from edge_vision.ros.image_conversion import stamp_to_ns
from edge_vision.ros.node_main import EdgeVisionNode, NodeConfigError, run_node
from edge_vision.ros.parameters import Param, ParameterBinding
from edge_vision.ros.qos import latched_qos
from edge_vision.srv import QueryEvents


def events_qos(depth: int = 1000) -> QoSProfile:
    """Reliable with a deep queue: events are few per second but none may be dropped."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE
    )


PARAMS = (
    Param("stream", "", "Stream name in events; empty: the node namespace (e.g. cam0)."),
    Param("model", "", "Model name recorded in detection events (e.g. nanodet-m)."),
    Param("classification_model", "", "Model name recorded in classification events."),
    Param("action_model", "", "Model name recorded in action events."),
    Param("min_frames", 3, "Frames an object must be seen in before its event starts.", (1, 1000)),
    Param(
        "end_after_s",
        1.0,
        "An event ends when its object was not seen for longer than this.",
        range=(0.0, 3600.0),
    ),
    Param(
        "update_every_s",
        1.0,
        "At most one UPDATE per event per this period (besides max-score rises).",
        range=(0.0, 3600.0),
    ),
    Param("update_on_max_score", True, "Publish an UPDATE at once when max_score rises."),
    Param("min_score", 0.0, "Ignore detections scoring below this.", range=(0.0, 1.0)),
    Param(
        "labels_wait_s",
        2.0,
        "Detections with numeric class ids that arrive before any LabelInfo on `labels` are "
        "held this long for it, so that events are named; then they go on with the ids.",
        range=(0.0, 60.0),
    ),
    Param(
        "queue_depth",
        100,
        "Depth of the detections, classification, action_windows and counts subscriptions "
        "(reliable): a stall longer than depth / frame rate loses frames in DDS.",
        range=(1, 10_000),
        read_only=True,
    ),
    Param(
        "classification_threshold",
        0.5,
        "A classification's top-1 result starts/extends an event at this score.",
        range=(0.0, 1.0),
    ),
    Param(
        "action_threshold",
        0.3,
        "An action window's top-1 result starts/extends an event at this score.",
        range=(0.0, 1.0),
    ),
    Param(
        "database",
        "",
        "SQLite event store; empty: $XDG_DATA_HOME/edge_vision/events.db.",
        read_only=True,
    ),
    Param(
        "synchronous",
        "NORMAL",
        "SQLite synchronous mode: NORMAL survives a process crash (kill -9); FULL also a power "
        "loss, at the cost of an fsync per commit.",
        choices=("NORMAL", "FULL"),
        read_only=True,
    ),
    Param("retention_days", 30.0, "Delete events that ended longer ago (0: keep).", (0.0, 36500.0)),
    Param(
        "retention_max_events",
        1_000_000,
        "Keep at most this many events (0: no limit).",
        range=(0, 1_000_000_000),
    ),
    Param(
        "query_limit",
        100,
        "Events returned by ~/query when the request gives no limit.",
        range=(1, 100_000),
    ),
)

_AGGREGATOR_PARAMS = {"min_frames", "end_after_s", "update_every_s", "update_on_max_score"}


class _Input:
    """One input kind: its aggregator, labels and source-clock bookkeeping for END checks."""

    def __init__(self, kind: str, make: Callable[[], EventAggregator]) -> None:
        self.kind = kind
        self.make = make
        self.aggregator = make()
        self.labels: list[str] | None = None
        # Detections (and counts) held until LabelInfo arrives (None: no longer waiting).
        self.held: list[Any] | None = []
        self.held_since = 0.0
        self.last_stamp_ns: int | None = None
        self.last_seen = 0.0  # time.monotonic() when last_stamp_ns arrived
        self.messages = 0

    def label(self, class_id: str) -> str:
        if self.labels is not None and class_id.isdigit() and int(class_id) < len(self.labels):
            return self.labels[int(class_id)]
        return class_id

    def clock_ns(self) -> int | None:
        """The source clock now, extrapolated from the last frame's stamp."""
        if self.last_stamp_ns is None:
            return None
        return self.last_stamp_ns + int((time.monotonic() - self.last_seen) * 1e9)


class EventAggregatorNode(EdgeVisionNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("event_aggregator", **kwargs)
        try:
            self.params = ParameterBinding(self, PARAMS, on_change=self._on_params)
        except ValueError as exc:
            raise NodeConfigError(str(exc)) from exc
        p = self.params
        self.stream = p["stream"] or self.get_namespace().strip("/") or "default"
        self.database = p["database"] or default_database()
        try:
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
            self.store = EventStore(
                self.database,
                max_age_s=p["retention_days"] * 86400 or None,
                max_events=p["retention_max_events"] or None,
                synchronous=p["synchronous"],
            )
        except Exception as exc:  # unreadable/corrupt file, no permission, disk full
            raise NodeConfigError(f"cannot open event database {self.database}: {exc}") from exc
        self._lock = threading.Lock()  # aggregators are fed from several callbacks and a timer
        self._inputs = {
            "detection": _Input("detection", lambda: self._aggregator("model")),
            "classification": _Input(
                "classification", lambda: self._aggregator("classification_model")
            ),
            "action": _Input("action", lambda: self._aggregator("action_model")),
        }
        self._published = 0
        self._store_errors = 0
        self._last_error = ""
        self._events_pub = self.create_publisher(EventMsg, "events", events_qos())
        for kind, topic in (
            ("detection", "labels"),
            ("classification", "classification_labels"),
            ("action", "action_labels"),
        ):
            self.create_subscription(
                LabelInfo, topic, lambda m, k=kind: self._on_labels(k, m), latched_qos()
            )
        depth = self.params["queue_depth"]
        self.create_subscription(Detection2DArray, "detections", self._on_detections, depth)
        self.create_subscription(Classification, "classification", self._on_classification, depth)
        self.create_subscription(ActionWindow, "action_windows", self._on_action_window, depth)
        self.create_subscription(CountArray, "counts", self._on_counts, depth)
        self.create_service(QueryEvents, "~/query", self._on_query)
        self.create_timer(0.2, self._on_timer)
        self._diag = diagnostics.DiagnosticsPublisher(self, self._status)
        self.get_logger().info(f"stream {self.stream!r}, event store {self.database}")

    def _aggregator(self, model_param: str) -> EventAggregator:
        p = self.params
        return EventAggregator(
            self.stream,
            p[model_param],
            min_frames=p["min_frames"],
            end_after_s=p["end_after_s"],
            update_every_s=p["update_every_s"],
            update_on_max_score=p["update_on_max_score"],
        )

    def _on_params(self, changed: Mapping[str, Any]) -> None:
        models = {"model", "classification_model", "action_model"}
        if not (_AGGREGATOR_PARAMS | models) & changed.keys():
            return
        # New settings apply to new aggregators; open events are ended first so none is lost.
        with self._lock:
            for inp in self._inputs.values():
                self._emit(inp.aggregator.flush())
                inp.aggregator = inp.make()

    # -- inputs ---------------------------------------------------------------------------------
    def _on_labels(self, kind: str, msg: LabelInfo) -> None:
        inp = self._inputs[kind]
        inp.labels = labels_from_label_info(msg)
        if kind == "detection":
            self._release_held(inp)

    def _hold_for_labels(self, inp: _Input, msg: Detection2DArray) -> bool:
        """Whether to hold ``msg`` until the labels arrive. A detector publishes LabelInfo
        (transient local) and detections at once, but under load the tracks can reach us before
        the LabelInfo does: the first events would then be named "0"."""
        if inp.held is None or inp.labels is not None:
            return False
        wait = self.params["labels_wait_s"]
        numeric = any(
            d.results and d.results[0].hypothesis.class_id.isdigit() for d in msg.detections
        )
        if wait <= 0 or not (numeric or inp.held):
            return False
        if not inp.held:
            inp.held_since = time.monotonic()
        inp.held.append(msg)
        if len(inp.held) >= 1000:  # bounded, whatever the rate
            self._release_held(inp)
        return True

    def _release_held(self, inp: _Input) -> None:
        held, inp.held = inp.held, None
        for msg in held or ():
            if isinstance(msg, CountArray):
                self._process_counts(msg)
            else:
                self._process_detections(msg)

    def _seen(self, inp: _Input, stamp_ns: int) -> None:
        inp.last_stamp_ns = stamp_ns
        inp.last_seen = time.monotonic()
        inp.messages += 1

    def _on_detections(self, msg: Detection2DArray) -> None:
        if not self._hold_for_labels(self._inputs["detection"], msg):
            self._process_detections(msg)

    def _process_detections(self, msg: Detection2DArray) -> None:
        inp = self._inputs["detection"]
        stamp = stamp_to_ns(msg.header.stamp)
        detections = msg_to_detections(msg, inp.labels)
        floor = self.params["min_score"]
        if floor > 0 and len(detections):
            detections = detections[detections.scores >= floor]
        with self._lock:
            self._seen(inp, stamp)
            self._emit(inp.aggregator.update(detections, stamp), msg.header.frame_id)

    def _on_classification(self, msg: Classification) -> None:
        inp = self._inputs["classification"]
        stamp = stamp_to_ns(msg.header.stamp)
        best = max(msg.results, key=lambda h: h.score, default=None)
        with self._lock:
            self._seen(inp, stamp)
            if best is None or best.score < self.params["classification_threshold"]:
                self._emit(inp.aggregator.tick(stamp), msg.header.frame_id)
                return
            label = inp.label(best.class_id)
            events = inp.aggregator.update_classification(best.class_id, label, best.score, stamp)
            self._emit(events, msg.header.frame_id)

    def _on_action_window(self, msg: ActionWindow) -> None:
        inp = self._inputs["action"]
        stamp = stamp_to_ns(msg.header.stamp)
        best = max(msg.results, key=lambda h: h.score, default=None)
        with self._lock:
            self._seen(inp, stamp)
            if best is None or best.score < self.params["action_threshold"]:
                self._emit(inp.aggregator.tick(stamp), msg.header.frame_id)
                return
            cx, cy = msg.bbox.center.position.x, msg.bbox.center.position.y
            hw, hh = msg.bbox.size_x / 2, msg.bbox.size_y / 2
            events = inp.aggregator.update_classification(
                best.class_id,
                inp.label(best.class_id),
                best.score,
                stamp,
                track_id=msg.track_id,
                bbox=(cx - hw, cy - hh, cx + hw, cy + hh),
            )
            self._emit(events, msg.header.frame_id)

    def _on_counts(self, msg: CountArray) -> None:
        held = self._inputs["detection"].held
        if held:  # keep the order of tracks and counts while the tracks wait for labels
            held.append(msg)
        else:
            self._process_counts(msg)

    def _process_counts(self, msg: CountArray) -> None:
        zones: dict[str, list[str]] = {}
        crossed: dict[str, dict[str, str]] = {}
        has_zones = False
        for count in msg.counts:
            if count.kind == Count.KIND_ZONE:
                has_zones = True
                for tid in count.track_ids:
                    zones.setdefault(tid, []).append(count.name)
            else:
                for tid in count.track_ids:
                    crossed.setdefault(tid, {})[f"line.{count.name}"] = "crossed"
        aggregator = self._inputs["detection"].aggregator
        events: list[Event] = []
        with self._lock:
            tids = set(crossed)
            if has_zones:
                tids.update(aggregator.tracked_ids())
            for tid in tids:
                attributes = dict(crossed.get(tid, {}))
                if has_zones:
                    attributes["zone"] = ",".join(sorted(zones.get(tid, [])))
                event = aggregator.annotate(tid, attributes)
                if event is not None:
                    events.append(event)
            self._emit(events, msg.header.frame_id)

    def _on_timer(self) -> None:
        inp = self._inputs["detection"]
        if inp.held and time.monotonic() - inp.held_since > self.params["labels_wait_s"]:
            self.get_logger().warning(
                f"no LabelInfo on {self.resolve_topic_name('labels')} after "
                f"{self.params['labels_wait_s']:g} s: events are labelled with class ids"
            )
            self._release_held(inp)
        with self._lock:
            for inp in self._inputs.values():
                now = inp.clock_ns()
                if now is not None and inp.aggregator.active:
                    self._emit(inp.aggregator.tick(now))

    # -- store, then publish --------------------------------------------------------------------
    def _emit(self, events: list[Event], frame_id: str = "") -> None:
        if not events:
            return
        try:
            self.store.put_many(events)
        except Exception as exc:  # disk full, database locked for too long, ...
            # Live subscribers still get the events; the failure is logged and reported.
            self._store_errors += len(events)
            self._last_error = f"event store write failed: {exc}"
            self.get_logger().error(self._last_error)
        for event in events:
            self._events_pub.publish(event_to_msg(event, frame_id))
        self._published += len(events)

    # -- query ----------------------------------------------------------------------------------
    def _on_query(
        self, request: QueryEvents.Request, response: QueryEvents.Response
    ) -> QueryEvents.Response:
        since = stamp_to_ns(request.since) or None
        until = stamp_to_ns(request.until) or None
        if since is not None and until is not None and since > until:
            response.success = False
            response.message = "since is after until"
            return response
        if not 0.0 <= request.min_score <= 1.0:
            response.success = False
            response.message = f"min_score {request.min_score} is outside [0, 1]"
            return response
        try:
            events = self.store.query(
                since_ns=since,
                until_ns=until,
                label=request.label or None,
                stream=request.stream or None,
                min_score=request.min_score or None,
                limit=request.limit or self.params["query_limit"],
            )
        except Exception as exc:
            response.success = False
            response.message = f"query failed: {exc}"
            return response
        response.events = [event_to_msg(e) for e in events]
        response.success = True
        response.message = f"{len(events)} events"
        return response

    def _status(self) -> diagnostics.Status:
        values: dict[str, object] = {
            "stream": self.stream,
            "database": self.database,
            "published": self._published,
            "store write errors": self._store_errors,
        }
        for kind, inp in self._inputs.items():
            values[f"{kind} messages"] = inp.messages
            values[f"{kind} open events"] = inp.aggregator.active
        if self._store_errors:
            return diagnostics.Status(diagnostics.ERROR, self._last_error, values)
        return diagnostics.Status(diagnostics.OK, f"{self._published} event messages", values)

    def close(self) -> None:
        # End what is open so the store has final records; publishing may already be gone.
        with self._lock:
            for inp in self._inputs.values():
                events = inp.aggregator.flush()
                if events:
                    try:
                        self.store.put_many(events)
                        for event in events:
                            self._events_pub.publish(event_to_msg(event))
                    except Exception as exc:
                        self.get_logger().warning(f"at shutdown: {exc}")
            self.store.close()


def create_node(args: list[str]) -> EventAggregatorNode:
    """Single-process launch hook (``edge-vision launch --single-process``)."""
    return EventAggregatorNode(cli_args=args)


def main(args: list[str] | None = None) -> int:
    return run_node(EventAggregatorNode, args, threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
