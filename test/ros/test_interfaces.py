"""Our msg/srv types and the vision_msgs we build work between processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from edge_vision.msg import Event

pytestmark = pytest.mark.ros

PUBLISHER = textwrap.dedent(
    """
    import sys, time
    import rclpy
    from diagnostic_msgs.msg import KeyValue
    from edge_vision.msg import Event
    rclpy.init()
    node = rclpy.create_node("event_publisher")
    pub = node.create_publisher(Event, "events", 10)
    msg = Event(id="ev-1", stream="cam0", model="nanodet-m", label="person", class_id="0",
                score=0.5, max_score=0.9, frames=42, track_id="7", state=Event.STATE_END,
                attributes=[KeyValue(key="zone", value="door")])
    msg.begin.sec, msg.end.sec, msg.end.nanosec = 100, 104, 500
    msg.bbox.center.position.x, msg.bbox.size_x = 320.5, 40.0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=0.1)
    """
)


def test_event_message_crosses_processes_intact(ros):
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER])
    try:
        (msg,) = ros.collect(Event, "/events", 1, timeout=20, qos=10)
    finally:
        proc.terminate()
        proc.wait(10)
    assert (msg.id, msg.stream, msg.model, msg.label, msg.class_id) == (
        "ev-1",
        "cam0",
        "nanodet-m",
        "person",
        "0",
    )
    assert msg.score == pytest.approx(0.5) and msg.max_score == pytest.approx(0.9)
    assert (msg.frames, msg.track_id, msg.state) == (42, "7", Event.STATE_END)
    assert (msg.begin.sec, msg.end.sec, msg.end.nanosec) == (100, 104, 500)
    assert msg.bbox.center.position.x == 320.5 and msg.bbox.size_x == 40.0
    assert [(kv.key, kv.value) for kv in msg.attributes] == [("zone", "door")]


def test_fallback_vision_msgs_has_the_4x_fields():
    from vision_msgs.msg import Detection2D, LabelInfo, ObjectHypothesisWithPose

    assert list(Detection2D.get_fields_and_field_types()) == ["header", "results", "bbox", "id"]
    assert list(ObjectHypothesisWithPose.get_fields_and_field_types()) == ["hypothesis", "pose"]
    assert list(LabelInfo.get_fields_and_field_types()) == ["header", "class_map", "threshold"]


# RIHS01 type hashes of the real vision_msgs 4.1 (as generated into rosidl_generator_c's
# *__description.c of a Jazzy build of ros-perception/vision_msgs). Detection2DArray's hash
# covers every type it nests (Detection2D, ObjectHypothesisWithPose, ObjectHypothesis,
# BoundingBox2D, Pose2D, Point2D, std_msgs/Header), so equal hashes mean wire compatibility.
PUBLISHED_HASHES = {
    "Detection2DArray": "RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968",
    "BoundingBox2D": "RIHS01_008eacbb0cf8f26e83795547bed013eec3675485ef386ec056d80eaaf1c1ce2f",
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_HASHES))
def test_vision_msgs_type_hashes_match_the_real_package(name):
    import json
    from pathlib import Path

    from ament_index_python.packages import get_package_share_directory

    description = Path(get_package_share_directory("vision_msgs"), "msg", f"{name}.json")
    data = json.loads(description.read_text())
    hashes = {h["type_name"]: h["hash_string"] for h in data["type_hashes"]}
    assert hashes[f"vision_msgs/msg/{name}"] == PUBLISHED_HASHES[name]
