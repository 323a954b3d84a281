"""Shared by the benchmark scripts: what to print about the run and the machine."""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def print_header() -> None:
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}, load average {os.getloadavg()[0]:.2f}")


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for row in rows:
        print("| " + " | ".join(row) + " |")


class Feeder:
    """Publishes the frames at ``rate`` Hz, stamped just before publishing."""

    def __init__(self, ros: Any, topic: str, frames: list[np.ndarray]) -> None:
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import Image

        from edge_vision.ros.image_conversion import numpy_to_image

        self._pub = ros.node.create_publisher(Image, topic, QoSProfile(depth=5))
        self._msgs = [numpy_to_image(f, "bgr8", frame_id="camera") for f in frames]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, rate: float) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(rate,), daemon=True)
        self._thread.start()

    def _run(self, rate: float) -> None:
        period = 1.0 / rate
        next_t = time.monotonic()
        i = 0
        while not self._stop.is_set():
            msg = self._msgs[i % len(self._msgs)]
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 10**9)
            self._pub.publish(msg)
            i += 1
            next_t += period
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()


def measure(collector: Any, seconds: float) -> tuple[float, list[float]]:
    """(messages/s, latencies in ms) over ``seconds``, after the collector is cleared."""
    from edge_vision.ros.image_conversion import stamp_to_ns

    collector.clear()
    time.sleep(seconds)
    msgs, arrivals = list(collector.messages), list(collector.arrival_ns)
    latencies = [
        (a - stamp_to_ns(m.header.stamp)) / 1e6 for m, a in zip(msgs, arrivals, strict=True)
    ]
    return len(msgs) / seconds, latencies


def node_breakdown(diagnostics: list, fqn: str) -> dict[str, str]:
    """The last diagnostics values the node published (strings, as on the wire)."""
    for msg in reversed(diagnostics):
        for status in msg.status:
            if status.name == fqn:
                return {kv.key: kv.value for kv in status.values}
    return {}
