"""image_monitor: prints and reports the rate and latency of an image topic.

The no-distro install has no ``ros2 topic hz`` / ``ros2 topic delay``; this node fills that gap
and is the visible end of ``make demo``. Latency is receive time minus the header stamp (the
capture time set by video_source), so it includes serialisation and transport. With
``save_path`` it also writes the frames it receives to an H.264 MP4 (e.g. the detector's
overlay), timed by their header stamps.

Topics: subscribes ``image`` (remap it, or set the ``topic`` parameter), publishes
``/diagnostics``. Parameters: ``topic``, ``period``, ``log``, ``save_path``, ``save_max_frames``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from sensor_msgs.msg import Image

from edge_vision.recording.mp4_writer import Mp4Writer
from edge_vision.ros import diagnostics
from edge_vision.ros.image_conversion import image_to_numpy, stamp_to_ns
from edge_vision.ros.node_main import EdgeVisionNode, NodeConfigError, run_node
from edge_vision.ros.parameters import Param, ParameterBinding
from edge_vision.ros.qos import sensor_subscriber_qos

PARAMS = (
    Param(
        "topic", "image", "Image topic to watch (relative names resolve in the node's namespace)."
    ),
    Param("period", 1.0, "Seconds between report lines.", range=(0.1, 3600.0)),
    Param("log", True, "Print a report line every period (diagnostics are published anyway)."),
    Param(
        "save_path",
        "",
        "Write received frames to this MP4 file (H.264, fragmented: playable even after a "
        "crash); empty = do not save. Read at start-up.",
        read_only=True,
    ),
    Param(
        "save_max_frames", 0, "Stop saving after this many frames (0 = no limit).", range=(0, 10**9)
    ),
)


class ImageMonitorNode(EdgeVisionNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("image_monitor", **kwargs)
        try:
            self.params = ParameterBinding(self, PARAMS, on_change=self._on_params)
        except ValueError as exc:
            raise NodeConfigError(str(exc)) from exc
        self._lock = threading.Lock()
        self._latencies_ms: list[float] = []
        self._count = 0
        self._total = 0
        self._last_shape = ""
        self._window_start = time.monotonic()
        self._last_report: dict[str, Any] = {"fps": 0.0}
        self._writer: Mp4Writer | None = None
        if self.params["save_path"]:
            self._writer = Mp4Writer(self.params["save_path"])
            self.get_logger().info(f"saving frames to {self.params['save_path']}")
        self._sub = self._subscribe()
        self._timer = self.create_timer(self.params["period"], self._report)
        self._diag = diagnostics.DiagnosticsPublisher(self, self._diagnostics)

    def _subscribe(self):
        return self.create_subscription(
            Image, self.params["topic"], self._on_image, sensor_subscriber_qos(5)
        )

    def _on_params(self, changed: Mapping[str, Any]) -> None:
        if "topic" in changed:
            self.destroy_subscription(self._sub)
            self._writer: Mp4Writer | None = None
        if self.params["save_path"]:
            self._writer = Mp4Writer(self.params["save_path"])
            self.get_logger().info(f"saving frames to {self.params['save_path']}")
        self._sub = self._subscribe()
        if "period" in changed:
            self._timer.timer_period_ns = int(changed["period"] * 1e9)
            self._timer.reset()

    def _on_image(self, msg: Image) -> None:
        latency_ms = (time.time_ns() - stamp_to_ns(msg.header.stamp)) / 1e6
        with self._lock:
            self._latencies_ms.append(latency_ms)
            self._count += 1
            self._total += 1
            self._last_shape = f"{msg.width}x{msg.height} {msg.encoding}"
        limit = self.params["save_max_frames"]
        if self._writer is not None and (not limit or self._writer.frames < limit):
            self._writer.write(image_to_numpy(msg, "bgr8"), stamp_to_ns(msg.header.stamp))

    def _report(self) -> None:
        now = time.monotonic()
        with self._lock:
            latencies, self._latencies_ms = self._latencies_ms, []
            count, self._count = self._count, 0
            shape = self._last_shape
            elapsed, self._window_start = now - self._window_start, now
        topic = self._sub.topic_name
        if not count:
            self._last_report = {"fps": 0.0}
            if self.params["log"]:
                self.get_logger().info(f"{topic}: no frames")
            return
        lat = np.asarray(latencies)
        report = {
            "fps": count / elapsed,
            "latency_p50_ms": float(np.percentile(lat, 50)),
            "latency_max_ms": float(lat.max()),
            "frames": self._total,
            "format": shape,
        }
        self._last_report = report
        if self.params["log"]:
            self.get_logger().info(
                f"{topic}: {report['fps']:.1f} fps, latency {report['latency_p50_ms']:.1f} ms "
                f"median / {report['latency_max_ms']:.1f} ms max, {shape}, "
                f"{self._total} frames"
            )

    def _diagnostics(self) -> diagnostics.Status:
        report = dict(self._last_report)
        level = diagnostics.OK if report["fps"] > 0 else diagnostics.WARN
        return diagnostics.Status(level, "receiving" if report["fps"] else "no frames", report)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            # rclpy is shut down by now (rosout is gone): plain stderr.
            print(f"saved {self._writer.frames} frames to {self._writer.path}", file=sys.stderr)


def create_node(args: list[str]) -> ImageMonitorNode:
    """Single-process launch hook (``edge-vision launch --single-process``)."""
    return ImageMonitorNode(cli_args=args)


def main(args: list[str] | None = None) -> int:
    return run_node(ImageMonitorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
