"""The dashboard's window on ROS: graph look-ups by type, service calls and parameters with
time-outs (callable from web threads), and caches of the topics the pages show.

:class:`RosBridge` wraps an rclpy node that an executor spins in other threads (the
``dashboard`` node). Nodes are found by what they offer, never by name, so the dashboard works
with any namespaces: sources by their ``GetSourceInfo`` service, inference nodes by
``LoadModel``, event aggregators by ``QueryEvents``, action triggers by publishing
``edge_vision/Alert``, and so on.

What is cached here is only a copy of ROS state (the newest alerts, the newest frames of a
watched image topic, training progress since start-up, the latched dataset stats): several web
workers each keep their own copy of the same thing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rclpy.node import Node

from edge_vision.outputs.frame_hub import DurationStats, FrameHub
from edge_vision.ros.services import ServiceClients, call_with_resend, default_resend_after

__all__ = ["BridgeError", "ImageView", "RosBridge", "ServiceMissing"]

GET_SOURCE_INFO = "edge_vision/srv/GetSourceInfo"
LOAD_MODEL = "edge_vision/srv/LoadModel"
QUERY_EVENTS = "edge_vision/srv/QueryEvents"
SET_PROMPT = "edge_vision/srv/SetPrompt"
GET_DATASET_STATS = "edge_vision/srv/GetDatasetStats"
ALERT = "edge_vision/msg/Alert"
TRAINING_PROGRESS = "edge_vision/msg/TrainingProgress"
DATASET_STATS = "edge_vision/msg/DatasetStats"
IMAGE = "sensor_msgs/msg/Image"


class BridgeError(RuntimeError):
    """A call into ROS failed (no answer in time, refused); the message says which and why."""


class ServiceMissing(BridgeError):
    """The service is not in the ROS graph: the node that offers it is not running."""


@dataclass
class ImageView:
    """Newest frames of one image topic for the MJPEG live view, with rate and latency."""

    topic: str
    hub: FrameHub = field(default_factory=FrameHub)
    latency_ms: DurationStats = field(default_factory=lambda: DurationStats(50))
    last_used: float = field(default_factory=time.monotonic)
    subscription: Any = None

    def stats(self) -> dict[str, Any]:
        frame = self.hub.latest()
        latency = self.latency_ms.summary()
        return {
            "topic": self.topic,
            "fps": round(self.hub.input_rate.rate(), 1),
            "frames": self.hub.input_rate.total,
            "latency_ms": None if latency is None else round(latency[0], 1),
            "latency_max_ms": None if latency is None else round(latency[1], 1),
            "size": None if frame is None else f"{frame.size[0]}x{frame.size[1]}",
        }


def _strip(name: str, suffix: str) -> str | None:
    return name[: -len(suffix)] or "/" if name.endswith(suffix) else None


class RosBridge:
    """Thread-safe access to ROS for the web app. ``node`` must be spun by an executor with
    at least two threads elsewhere (calls made here wait for answers the executor delivers)."""

    def __init__(self, node: Node, call_timeout_s: float = 5.0, max_alerts: int = 100) -> None:
        self.node = node
        self.call_timeout_s = call_timeout_s
        self._lock = threading.Lock()
        self._services = ServiceClients(node)
        self._subscribed: set[str] = set()
        self.alerts: deque[dict[str, Any]] = deque(maxlen=max_alerts)
        self.progress: dict[str, deque[dict[str, Any]]] = {}
        self.dataset_stats: dict[str, dict[str, Any]] = {}
        self._views: dict[str, ImageView] = {}
        self.alert_count = 0
        # Topics come and go with nodes: look for new alert/progress/stats topics regularly.
        node.create_timer(1.0, self._tick)

    def _tick(self) -> None:
        self.scan_topics()
        self.drop_idle_views()

    # -- graph ------------------------------------------------------------------------------------
    def services_of_type(self, srv_type: str) -> list[str]:
        return sorted(
            name for name, types in self.node.get_service_names_and_types() if srv_type in types
        )

    def topics_of_type(self, msg_type: str) -> list[str]:
        return sorted(
            name for name, types in self.node.get_topic_names_and_types() if msg_type in types
        )

    def nodes_with_service(self, srv_type: str, suffix: str) -> list[str]:
        """Fully qualified names of the nodes offering ``~/<suffix>`` of ``srv_type``."""
        found = (_strip(s, "/" + suffix) for s in self.services_of_type(srv_type))
        return sorted({n for n in found if n})

    def sources(self) -> list[str]:
        return self.nodes_with_service(GET_SOURCE_INFO, "get_info")

    def model_nodes(self) -> list[str]:
        return self.nodes_with_service(LOAD_MODEL, "load_model")

    def aggregators(self) -> list[str]:
        return self.nodes_with_service(QUERY_EVENTS, "query")

    def prompt_nodes(self) -> list[str]:
        return self.nodes_with_service(SET_PROMPT, "set_prompt")

    def dataset_nodes(self) -> list[str]:
        return self.nodes_with_service(GET_DATASET_STATS, "get_stats")

    def trainers(self) -> list[str]:
        found = (_strip(t, "/progress") for t in self.topics_of_type(TRAINING_PROGRESS))
        return sorted({n for n in found if n})

    def action_triggers(self) -> list[str]:
        """Nodes publishing edge_vision/Alert (the action_trigger nodes)."""
        out = set()
        for topic in self.topics_of_type(ALERT):
            for info in self.node.get_publishers_info_by_topic(topic):
                ns = info.node_namespace.rstrip("/")
                out.add(f"{ns}/{info.node_name}")
        return sorted(out)

    def image_topics(self) -> list[str]:
        return self.topics_of_type(IMAGE)

    def check_image_topic(self, topic: str) -> str | None:
        """None if ``topic`` can be watched: a valid name, and sensor_msgs/Image if it exists
        already (a stream still starting publishes it later), else why not."""
        from rclpy.validate_full_topic_name import validate_full_topic_name

        try:
            validate_full_topic_name(topic)
        except Exception as exc:  # rclpy raises its own InvalidTopicNameException
            return f"{topic!r} is not a topic name: {exc}"
        for name, types in self.node.get_topic_names_and_types():
            if name == topic and IMAGE not in types:
                return f"{topic} is a {', '.join(types)} topic, not {IMAGE}"
        return None

    # -- services ---------------------------------------------------------------------------------
    def call(
        self, srv_type: type, name: str, request: Any = None, timeout: float | None = None
    ) -> Any:
        """Call service ``name``; ServiceMissing when nobody offers it, BridgeError when it
        does not answer within ``timeout`` seconds."""
        timeout = self.call_timeout_s if timeout is None else timeout
        resend_after = default_resend_after(srv_type)
        client = self._services.ready(
            srv_type, name, min(timeout, 1.0), settle=resend_after is None
        )
        if client is None:
            raise ServiceMissing(f"{name} is not running (no such service in the ROS graph)")
        try:
            result = call_with_resend(
                client,
                request if request is not None else srv_type.Request(),
                timeout,
                resend_after=resend_after,
            )
        except Exception as exc:
            raise BridgeError(f"{name}: call failed ({exc})") from exc
        if result is None:
            raise BridgeError(f"{name} did not answer within {timeout:g} s")
        return result

    # -- parameters -------------------------------------------------------------------------------
    def list_parameters(self, node: str, prefixes: Sequence[str] = ()) -> list[str]:
        from rcl_interfaces.srv import ListParameters

        request = ListParameters.Request(prefixes=list(prefixes), depth=0)
        return sorted(self.call(ListParameters, f"{node}/list_parameters", request).result.names)

    def describe_parameters(self, node: str, names: Sequence[str]) -> dict[str, Any]:
        """Name -> rcl_interfaces/ParameterDescriptor."""
        from rcl_interfaces.srv import DescribeParameters

        request = DescribeParameters.Request(names=list(names))
        response = self.call(DescribeParameters, f"{node}/describe_parameters", request)
        return dict(zip(names, response.descriptors, strict=True))

    def get_parameters(self, node: str, names: Sequence[str]) -> dict[str, Any]:
        """Name -> value; None for a parameter declared without a value (rclpy declares an
        empty list default that way, and its service then answers nothing for the request)."""
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        def get(batch: Sequence[str]) -> list[Any]:
            request = GetParameters.Request(names=list(batch))
            return list(self.call(GetParameters, f"{node}/get_parameters", request).values)

        values = get(names)
        if len(values) == len(names):
            return {n: parameter_value_to_python(v) for n, v in zip(names, values, strict=True)}
        out: dict[str, Any] = {}
        for name in names:  # one by one: find the unset ones
            one = get([name])
            out[name] = parameter_value_to_python(one[0]) if one else None
        return out

    def set_parameters(self, node: str, values: Mapping[str, Any]) -> list[tuple[bool, str]]:
        """Set parameters (each on its own); (successful, reason) per value, in order."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        )
        response = self.call(SetParameters, f"{node}/set_parameters", request)
        return [(r.successful, r.reason) for r in response.results]

    # -- events -----------------------------------------------------------------------------------
    def query_events(self, limit: int = 500) -> list[dict[str, Any]]:
        """Newest events of every event_aggregator (its ``~/query`` over its store)."""
        from edge_vision.ros.conversions import msg_to_event
        from edge_vision.srv import QueryEvents

        out: list[dict[str, Any]] = []
        errors = []
        for node in self.aggregators():
            try:
                response = self.call(
                    QueryEvents, f"{node}/query", QueryEvents.Request(limit=int(limit))
                )
            except BridgeError as exc:
                errors.append(str(exc))
                continue
            if not response.success:
                errors.append(f"{node}/query: {response.message}")
                continue
            out.extend(msg_to_event(m).to_dict() for m in response.events)
        if errors and not out:
            raise BridgeError("; ".join(errors))
        return out

    # -- topic caches -----------------------------------------------------------------------------
    def scan_topics(self) -> None:
        """Subscribe to alert, training-progress and dataset-stats topics not seen yet."""
        from edge_vision.msg import Alert, DatasetStats, TrainingProgress
        from edge_vision.ros.qos import latched_qos

        wanted: list[tuple[str, type, Callable[[str], Callable[[Any], None]], Any]] = []
        for topic in self.topics_of_type(ALERT):
            wanted.append((topic, Alert, lambda t: self._on_alert, 20))
        for topic in self.topics_of_type(TRAINING_PROGRESS):
            wanted.append((topic, TrainingProgress, self._progress_cb, 50))
        for topic in self.topics_of_type(DATASET_STATS):
            wanted.append((topic, DatasetStats, self._stats_cb, latched_qos()))
        for topic, msg_type, make_cb, qos in wanted:
            with self._lock:
                if topic in self._subscribed:
                    continue
                self._subscribed.add(topic)
            self.node.create_subscription(msg_type, topic, make_cb(topic), qos)

    def _on_alert(self, msg: Any) -> None:
        from edge_vision.ros.conversions import msg_to_event

        event = msg_to_event(msg.event)
        with self._lock:
            self.alert_count += 1
            self.alerts.appendleft(
                {
                    "n": self.alert_count,
                    "received": time.time(),
                    "action": msg.action,
                    "text": msg.text,
                    "label": event.label,
                    "stream": event.stream,
                    "event_id": event.id,
                }
            )

    def recent_alerts(self, count: int = 10) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.alerts)[:count]

    def _progress_cb(self, topic: str) -> Callable[[Any], None]:
        node = topic[: -len("/progress")]

        def on_progress(msg: Any) -> None:
            row = {
                "time": time.time(),
                "state": msg.state,
                "epoch": msg.epoch,
                "epochs": msg.epochs,
                "step": msg.step,
                "steps": msg.steps,
                "loss": float(msg.loss),
                "train_accuracy": float(msg.train_accuracy),
                "val_accuracy": float(msg.val_accuracy),
                "best_val_accuracy": float(msg.best_val_accuracy),
                "best_model": msg.best_model,
                "message": msg.message,
            }
            with self._lock:
                self.progress.setdefault(node, deque(maxlen=5000)).append(row)

        return on_progress

    def training_progress(self, node: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.progress.get(node, ()))

    def _stats_cb(self, topic: str) -> Callable[[Any], None]:
        node = _strip(topic, "/stats") or topic

        def on_stats(msg: Any) -> None:
            with self._lock:
                self.dataset_stats[node] = stats_to_dict(msg)

        return on_stats

    # -- live view --------------------------------------------------------------------------------
    def view(self, topic: str) -> ImageView:
        """The live view of image ``topic``, subscribing on first use; :meth:`drop_idle_views`
        unsubscribes once nobody watches (so an upstream overlay stops being drawn)."""
        from sensor_msgs.msg import Image

        from edge_vision.ros.image_conversion import image_to_numpy, stamp_to_ns
        from edge_vision.ros.qos import sensor_subscriber_qos

        with self._lock:
            view = self._views.get(topic)
            if view is not None:
                view.last_used = time.monotonic()
                return view
            view = ImageView(topic)
            self._views[topic] = view

        def on_image(msg: Image, view: ImageView = view) -> None:
            # Only decoded while someone watches (a browser holds the MJPEG stream open).
            if view.hub.viewers() == 0 and time.monotonic() - view.last_used > 5.0:
                return
            stamp_ns = stamp_to_ns(msg.header.stamp)
            view.latency_ms.add((time.time_ns() - stamp_ns) / 1e6)
            view.hub.put(image_to_numpy(msg, "bgr8"), stamp_ns)

        view.subscription = self.node.create_subscription(
            Image, topic, on_image, sensor_subscriber_qos(2)
        )
        return view

    def drop_idle_views(self, idle_s: float = 10.0) -> None:
        """Unsubscribe views nobody has watched for ``idle_s`` (run from a node timer, in the
        executor, as video_output does)."""
        now = time.monotonic()
        with self._lock:
            idle = [
                v
                for v in self._views.values()
                if v.hub.viewers() == 0 and now - v.last_used > idle_s
            ]
            for v in idle:
                del self._views[v.topic]
        for v in idle:
            if v.subscription is not None:
                self.node.destroy_subscription(v.subscription)

    def view_stats(self, topic: str) -> dict[str, Any] | None:
        with self._lock:
            view = self._views.get(topic)
        return None if view is None else view.stats()


def stats_to_dict(msg: Any) -> dict[str, Any]:
    """edge_vision/DatasetStats as plain data for the pages."""
    return {
        "root": msg.root,
        "tags": list(msg.tags),
        "train": [int(v) for v in msg.train],
        "val": [int(v) for v in msg.val],
        "images": int(msg.images),
        "skipped": int(msg.skipped),
        "active_tags": list(msg.active_tags),
        "recording": bool(msg.recording),
        "recorded": int(msg.recorded),
    }
