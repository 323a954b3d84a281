"""The newest-frame inference loop shared by the inference nodes (detector, classifier, pose).

Subscriptions ``put`` each incoming item (a frame, or a matched image + detections pair) into a
one-slot mailbox; one worker thread takes the newest and runs the node's ``process`` on it. When
inference is slower than the input, older items are replaced and counted instead of queueing, so
latency stays bounded by one inference time. The loop also keeps the timing the diagnostics
report (inference time, time waited for the worker, the node's own overhead, end-to-end latency)
and makes a failing item a counted, logged-once error instead of a dead thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import numpy as np
from rclpy.node import Node

from edge_vision.core.latest import LatestSlot
from edge_vision.ros import diagnostics
from edge_vision.ros.model_host import ModelHost

T = TypeVar("T")
_MAX_LOGGED_ERRORS = 50


class InferenceLoop(Generic[T]):
    def __init__(
        self,
        node: Node,
        models: ModelHost,
        process: Callable[[T], int | None],
        extra_values: Callable[[], Mapping[str, object]] | None = None,
    ) -> None:
        """``process(item)`` runs in the worker thread, calls the model through :meth:`infer`,
        publishes, and returns the source header stamp in ns (None when it skipped the item).
        ``extra_values`` adds node-specific values to the diagnostics status."""
        self._node = node
        self._models = models
        self._process = process
        self._extra_values = extra_values
        self._slot: LatestSlot[tuple[float, T]] = LatestSlot()
        self._infer_s = 0.0  # inference time of the item being processed (worker thread only)
        self._infer_ms: deque[float] = deque(maxlen=100)
        self._wait_ms: deque[float] = deque(maxlen=100)
        self._overhead_ms: deque[float] = deque(maxlen=100)
        self._done_times: deque[float] = deque(maxlen=64)
        self.latency_ms = 0.0
        self.frames_done = 0
        self.errors = 0
        self.last_error = ""
        self._logged: set[str] = set()
        self._diag = diagnostics.DiagnosticsPublisher(node, self.status)
        self._thread = threading.Thread(target=self._work, name="inference", daemon=True)
        self._thread.start()

    def put(self, item: T) -> None:
        """Hand over the newest input (from a subscription callback)."""
        self._slot.put((time.perf_counter(), item))

    def infer(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the model: timed as inference (several calls per item add up)."""
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self._infer_s += time.perf_counter() - started

    def close(self) -> None:
        self._slot.close()
        self._thread.join(timeout=5.0)

    # -- worker thread ----------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._slot.closed:
            taken = self._slot.take(timeout=0.5)
            if taken is None:
                continue
            arrived, item = taken
            started = time.perf_counter()
            self._infer_s = 0.0
            try:
                stamp_ns = self._process(item)
            except Exception as exc:  # one bad frame must not stop the node
                if not self._node.context.ok():
                    return  # shutting down: the last frame's publish fails, nothing to report
                self._failed(exc)
                continue
            if stamp_ns is None:
                continue
            done = time.perf_counter()
            self._wait_ms.append((started - arrived) * 1e3)
            self._infer_ms.append(self._infer_s * 1e3)
            self._overhead_ms.append((done - started - self._infer_s) * 1e3)
            self._done_times.append(time.monotonic())
            self.latency_ms = (time.time_ns() - stamp_ns) / 1e6
            self.frames_done += 1

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self.last_error = f"frame failed: {type(exc).__name__}: {exc}"
        # Once per distinct error: a camera in a bad encoding would otherwise flood the log.
        if self.last_error not in self._logged:
            if len(self._logged) < _MAX_LOGGED_ERRORS:
                self._logged.add(self.last_error)
            self._node.get_logger().error(self.last_error)

    # -- reporting --------------------------------------------------------------------------------
    def fps(self) -> float:
        times = list(self._done_times)
        if len(times) < 2 or time.monotonic() - times[-1] > 2.0:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def status(self) -> diagnostics.Status:
        model, name = self._models.current()
        error = self._models.error or self.last_error
        if model is None:
            level = diagnostics.ERROR
        elif error:
            level = diagnostics.WARN
        else:
            level = diagnostics.OK
        infer = np.asarray(self._infer_ms) if self._infer_ms else np.zeros(1)
        values: dict[str, object] = {
            "model": name,
            "device": self._node.get_parameter("device").value,
            "fps": self.fps(),
            "inference_ms_mean": float(infer.mean()),
            "inference_ms_p95": float(np.percentile(infer, 95)),
            # time an input waited for the worker / the node's own work around the model
            "wait_ms_median": _median(self._wait_ms),
            "overhead_ms_median": _median(self._overhead_ms),
            "latency_ms": self.latency_ms,
            "frames_in": self._slot.put_count,
            "frames_done": self.frames_done,
            "frames_dropped": self._slot.replaced,
            "errors": self.errors,
        }
        if self._extra_values is not None:
            values.update(self._extra_values())
        return diagnostics.Status(level, error or f"serving {name}", values)


def _median(values: deque[float]) -> float:
    return float(np.median(values)) if values else 0.0
