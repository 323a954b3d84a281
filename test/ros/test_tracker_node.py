"""tracker over real DDS: track ids, exact line counts, zones, parameters at run time."""

from __future__ import annotations

import time

import numpy as np
import pytest
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray

from edge_vision.core.detections import Detections
from edge_vision.msg import Count, CountArray
from edge_vision.ros.conversions import detections_to_msg
from edge_vision.ros.image_conversion import ns_to_stamp, stamp_to_ns
from edge_vision.testing.ros_harness import wait_until

pytestmark = pytest.mark.ros


def _walkers(frame: int) -> Detections:
    """Two people 40x60 px, far apart in x. The left one walks down 10 px per frame (box bottom
    at y = 10 * frame), crossing y=100 between frames 10 and 11; the right one walks up (bottom
    at 300 - 10 * frame), crossing it between frames 20 and 21."""
    down = (100.0, frame * 10.0 - 60.0, 140.0, frame * 10.0)
    up = (400.0, 300.0 - frame * 10.0 - 60.0, 440.0, 300.0 - frame * 10.0)
    return Detections(
        np.array([down, up], np.float32),
        np.array([0.9, 0.8], np.float32),
        np.array([0, 0], np.int32),
        labels=["person", "person"],
    )


def test_tracks_keep_ids_and_lines_count_each_crossing_once(ros, start_node):
    tracker = start_node(
        "tracker",
        namespace="t1",
        parameters={
            "tracker": "bytetrack",
            "lines": ["middle: 0,100 640,100"],
            "zones": ["left: 0,0 300,0 300,480 0,480"],
        },
    )
    pub = ros.node.create_publisher(Detection2DArray, "/t1/detections", 10)
    tracks = ros.subscribe(Detection2DArray, "/t1/tracks", qos=100)
    counts = ros.subscribe(CountArray, "/t1/counts", qos=100)
    assert ros.wait_for_publisher("/t1/tracks"), tracker.output()
    deadline = time.monotonic() + 15
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    n = 26
    for f in range(1, n + 1):
        header = Header(stamp=ns_to_stamp(f * 100_000_000), frame_id="cam")
        pub.publish(detections_to_msg(_walkers(f), header))
        time.sleep(0.1)  # the stamps' 10 fps: a loaded machine must not drop from the queue

    def has_last_frame(collector) -> bool:
        msgs = list(collector.messages)
        return bool(msgs) and stamp_to_ns(msgs[-1].header.stamp) == n * 100_000_000

    wait_until(lambda: has_last_frame(tracks), 30, "tracks of the last frame")
    wait_until(lambda: has_last_frame(counts), 30, "counts of the last frame")

    # Header copied from the input; ids stable for both walkers across all frames.
    last = tracks.messages[-1]
    assert last.header.stamp.sec * 10**9 + last.header.stamp.nanosec == n * 100_000_000
    ids_by_x: dict[bool, set[str]] = {True: set(), False: set()}
    for msg in tracks.messages:
        for det in msg.detections:
            ids_by_x[det.bbox.center.position.x < 300].add(det.id)
    assert len(ids_by_x[True]) == 1 and len(ids_by_x[False]) == 1, ids_by_x
    assert ids_by_x[True] != ids_by_x[False]

    final = {c.name: c for c in counts.messages[-1].counts}
    # Down across a left-to-right line is `in` (right-hand side on screen); up is `out`.
    assert (final["middle"].kind, final["middle"].count_in, final["middle"].count_out) == (
        Count.KIND_LINE,
        1,
        1,
    )
    assert final["left"].kind == Count.KIND_ZONE
    assert final["left"].occupancy == 1 and final["left"].track_ids == list(ids_by_x[True])


def test_bad_line_parameter_is_refused_and_a_new_line_applies_at_run_time(ros, start_node):
    start_node("tracker", namespace="t2")
    assert ros.wait_for_publisher("/t2/tracks")
    (bad,) = ros.set_parameters("/t2/tracker", {"lines": ["door: 0,100"]})
    assert not bad.successful
    assert "line 'door': needs exactly 2 points" in bad.reason
    (ok,) = ros.set_parameters("/t2/tracker", {"lines": ["door: 0,100 640,100"]})
    assert ok.successful, ok.reason

    pub = ros.node.create_publisher(Detection2DArray, "/t2/detections", 10)
    counts = ros.subscribe(CountArray, "/t2/counts", qos=100)
    deadline = time.monotonic() + 15
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    for f in range(1, 27):
        pub.publish(detections_to_msg(_walkers(f), Header(stamp=ns_to_stamp(f * 10**8))))
        time.sleep(0.03)
    counts.wait_for(25, timeout=15)
    (door,) = counts.messages[-1].counts
    assert door.name == "door" and (door.count_in, door.count_out) == (1, 1)
