"""A real pipeline for the dashboard's browser tests and screenshots: OpenCV's ``vtest.avi``
-> detector (nanodet-m, people) -> tracker -> event_aggregator (SQLite store) ->
action_trigger (an ``alert`` action on every new person event) -> dashboard.

Each node is a real process (:class:`~edge_vision.testing.ros_harness.NodeProcess`); the
caller isolates the ROS environment first and stops them with :func:`stop_all`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from edge_vision.testing.media import VTEST, require
from edge_vision.testing.ros_harness import NodeProcess

__all__ = ["DemoPipeline", "free_port", "start_demo_pipeline", "stop_all"]

RULES = {
    "rules": [
        {
            "name": "person_seen",
            "and": [
                {"key": "label", "operator": "==", "value": "person"},
                {"key": "state", "operator": "==", "value": "NEW"},
            ],
            "action": "alert",
        }
    ]
}


@dataclass
class DemoPipeline:
    namespace: str
    url: str
    database: Path
    streams_dir: Path
    nodes: list[NodeProcess]

    @property
    def dashboard(self) -> NodeProcess:
        return self.nodes[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_demo_pipeline(
    work_dir: Path, namespace: str = "cam0", port: int | None = None, fps: float = 0.0
) -> DemoPipeline:
    from edge_vision.models.zoo import pull

    pull("nanodet-m")  # converted once, cached
    work_dir.mkdir(parents=True, exist_ok=True)
    rules = work_dir / "rules.yaml"
    rules.write_text(yaml.safe_dump(RULES, sort_keys=False))
    database = work_dir / "events.db"
    streams_dir = work_dir / "streams"
    port = port or free_port()
    ns = namespace
    nodes: list[NodeProcess] = []
    try:
        nodes.append(
            NodeProcess(
                "video_source",
                namespace=ns,
                parameters={"uri": str(require(VTEST)), "loop": True, "fps": float(fps)},
                log_dir=work_dir,
            )
        )
        nodes.append(
            NodeProcess(
                "detector",
                namespace=ns,
                parameters={"classes": ["person"], "score_threshold": 0.4},
                remappings={"image": "image_raw"},
                log_dir=work_dir,
            )
        )
        nodes.append(
            NodeProcess(
                "tracker", namespace=ns, parameters={"classes": ["person"]}, log_dir=work_dir
            )
        )
        nodes.append(
            NodeProcess(
                "event_aggregator",
                namespace=ns,
                parameters={
                    "database": str(database),
                    "model": "nanodet-m",
                    "min_frames": 3,
                    "end_after_s": 1.0,
                },
                remappings={"detections": "tracks"},
                log_dir=work_dir,
            )
        )
        nodes.append(
            NodeProcess(
                "action_trigger",
                namespace=ns,
                parameters={
                    "rules_file": str(rules),
                    "actions": ["alert: alert"],
                    "alert.template": "{label} (track {track_id}) on {stream}",
                },
                log_dir=work_dir,
            )
        )
        nodes.append(
            NodeProcess(
                "dashboard",
                parameters={
                    "port": port,
                    "database": str(database),
                    "streams_dir": str(streams_dir),
                },
                log_dir=work_dir,
            )
        )
    except BaseException:
        stop_all(nodes)
        raise
    return DemoPipeline(ns, f"http://127.0.0.1:{port}", database, streams_dir, nodes)


def stop_all(nodes: Iterable[NodeProcess]) -> None:
    for node in reversed(list(nodes)):
        if node.alive():
            node.stop(timeout=10)
