"""metropolis_publisher: per-frame object metadata on a Redis stream, in NVIDIA's Metropolis
Minimal Schema (the format the Metropolis NanoOWL service emits; see
:mod:`edge_vision.outputs.metropolis` for the exact fields).

Topics: subscribes ``detections`` (vision_msgs/Detection2DArray; the tracker's ``tracks`` give
objects their ids, untracked objects get id -1) and ``labels`` (LabelInfo) for the object types;
publishes ``/diagnostics``.

Every frame becomes one XADD (field ``field``, JSON value) on ``stream`` at ``host``:``port``.
The Redis connection lives in a background thread with a bounded buffer: while Redis is down,
messages wait (up to ``buffer_size``) and are delivered in order once it is back; what overflows
is dropped oldest-first and counted in diagnostics and the log, never silently. Changing
``host``, ``port``, ``stream`` or ``field`` at run time moves to the new target; messages still
buffered for the old one get 1 s to drain there.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from vision_msgs.msg import Detection2DArray, LabelInfo

from edge_vision.outputs.metropolis import frame_message
from edge_vision.outputs.redis_stream import BufferedRedisStream
from edge_vision.ros import diagnostics
from edge_vision.ros.conversions import labels_from_label_info, msg_to_detections
from edge_vision.ros.image_conversion import stamp_to_ns
from edge_vision.ros.node_main import EdgeVisionNode, NodeConfigError, run_node
from edge_vision.ros.parameters import Param, ParameterBinding
from edge_vision.ros.qos import latched_qos

PARAMS = (
    Param("host", "127.0.0.1", "Redis host."),
    Param("port", 6379, "Redis port.", range=(1, 65535)),
    Param("stream", "metropolis", "Redis stream key the messages are added to."),
    Param("field", "metadata", "Field name of the JSON message in each stream entry."),
    Param("sensor_id", "", "sensorId in the messages; empty: the node namespace (e.g. cam0)."),
    Param(
        "maxlen",
        100_000,
        "Trim the stream to about this many entries (0: no trim).",
        range=(0, 1_000_000_000),
    ),
    Param(
        "buffer_size",
        10_000,
        "Messages kept while Redis is unreachable; beyond it the oldest are dropped (counted).",
        range=(1, 10_000_000),
        read_only=True,
    ),
    Param(
        "queue_depth",
        100,
        "Depth of the detections subscription (reliable): a stall of the node longer than "
        "depth / frame rate loses frames in DDS, before the node can buffer or count them.",
        range=(1, 10_000),
        read_only=True,
    ),
)
_TARGET = {"host", "port", "stream", "field", "maxlen"}


class MetropolisPublisherNode(EdgeVisionNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("metropolis_publisher", **kwargs)
        try:
            self.params = ParameterBinding(self, PARAMS, on_change=self._on_params)
        except ValueError as exc:
            raise NodeConfigError(str(exc)) from exc
        self._lock = threading.Lock()
        self._labels: list[str] | None = None
        self._frames = 0
        self._redis = self._connect()
        self.create_subscription(LabelInfo, "labels", self._on_labels, latched_qos())
        self.create_subscription(
            Detection2DArray, "detections", self._on_detections, self.params["queue_depth"]
        )
        self._diag = diagnostics.DiagnosticsPublisher(self, self._status)

    def _sensor_id(self) -> str:
        return self.params["sensor_id"] or self.get_namespace().strip("/") or "default"

    def _connect(self) -> BufferedRedisStream:
        p = self.params
        return BufferedRedisStream(
            p["host"],
            p["port"],
            p["stream"],
            maxlen=p["maxlen"] or None,
            buffer_size=p["buffer_size"],
            field=p["field"],
            logger=_RosLogger(self),
        )

    def _on_params(self, changed: Mapping[str, Any]) -> None:
        if not _TARGET & changed.keys():
            return
        with self._lock:
            old, self._redis = self._redis, self._connect()
        old.close(timeout=1.0)

    def _on_labels(self, msg: LabelInfo) -> None:
        self._labels = labels_from_label_info(msg)

    def _on_detections(self, msg: Detection2DArray) -> None:
        detections = msg_to_detections(msg, self._labels)
        message = frame_message(
            self._sensor_id(), stamp_to_ns(msg.header.stamp), self._frames, detections
        )
        self._frames += 1
        with self._lock:
            self._redis.add(message)

    def _status(self) -> diagnostics.Status:
        s = self._redis.stats()
        p = self.params
        values = {
            "target": f"redis://{p['host']}:{p['port']} stream {p['stream']}",
            "frames": self._frames,
            "sent": s.sent,
            "buffered": s.buffered,
            "dropped (buffer full)": s.dropped,
            "connected": s.connected,
            "last error": s.last_error or "-",
        }
        if s.dropped:
            return diagnostics.Status(
                diagnostics.ERROR, f"{s.dropped} messages dropped: buffer full", values
            )
        if not s.connected and self._frames:
            return diagnostics.Status(
                diagnostics.WARN, f"Redis unreachable, {s.buffered} buffered", values
            )
        return diagnostics.Status(diagnostics.OK, f"{s.sent} messages sent", values)

    def close(self) -> None:
        self._redis.close(timeout=2.0)


class _RosLogger:
    """The logging.Logger subset BufferedRedisStream uses, on the node's ROS logger."""

    def __init__(self, node: EdgeVisionNode) -> None:
        self._log = node.get_logger()

    def info(self, msg: str, *args: object) -> None:
        self._log.info(msg % args if args else msg)

    def warning(self, msg: str, *args: object) -> None:
        self._log.warning(msg % args if args else msg)

    def error(self, msg: str, *args: object) -> None:
        self._log.error(msg % args if args else msg)

    def debug(self, msg: str, *args: object) -> None:
        self._log.debug(msg % args if args else msg)


def create_node(args: list[str]) -> MetropolisPublisherNode:
    """Single-process launch hook (``edge-vision launch --single-process``)."""
    return MetropolisPublisherNode(cli_args=args)


def main(args: list[str] | None = None) -> int:
    return run_node(MetropolisPublisherNode, args, threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
