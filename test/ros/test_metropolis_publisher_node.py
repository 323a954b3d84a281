"""metropolis_publisher over real DDS into a real redis-server on 127.0.0.1: messages in the
Minimal Schema arrive; with Redis stopped and restarted, the buffered ones arrive in order and
none are lost; beyond the buffer, drops are counted in diagnostics."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray

from edge_vision.core.detections import Detections
from edge_vision.outputs.metropolis import parse_object
from edge_vision.ros.conversions import detections_to_msg
from edge_vision.ros.image_conversion import ns_to_stamp
from edge_vision.testing.redis_server import RedisTestServer, redis_server_unavailable_reason
from edge_vision.testing.ros_harness import wait_until

pytestmark = [
    pytest.mark.ros,
    pytest.mark.skipif(
        redis_server_unavailable_reason() is not None,
        reason=str(redis_server_unavailable_reason()),
    ),
]

T0 = 1_795_000_000 * 10**9


def _frame(i: int) -> Detection2DArray:
    dets = Detections(
        np.array([[10.0 + i, 20.0, 50.5 + i, 80.25]], np.float32),
        np.array([0.875], np.float32),
        np.array([0], np.int32),
        track_ids=np.array([7], np.int64),
    )
    return detections_to_msg(dets, Header(stamp=ns_to_stamp(T0 + i * 10**8), frame_id="cam"))


def _entries(client, stream: str) -> list[dict]:
    return [json.loads(fields[b"metadata"]) for _, fields in client.xrange(stream)]


def test_messages_arrive_and_survive_a_redis_restart(ros, start_node):
    import redis

    with RedisTestServer() as server:
        node = start_node(
            "metropolis_publisher",
            namespace="mp1",
            parameters={"port": server.port, "stream": "owl", "buffer_size": 1000},
        )
        client = redis.Redis(host="127.0.0.1", port=server.port)
        pub = ros.node.create_publisher(Detection2DArray, "/mp1/detections", 100)
        wait_until(lambda: pub.get_subscription_count() > 0, 20, "subscriber")
        time.sleep(0.3)
        for i in range(10):
            pub.publish(_frame(i))
        wait_until(lambda: client.xlen("owl") == 10, 10, "10 entries")
        first = _entries(client, "owl")[0]
        assert first["version"] == "4.0" and first["sensorId"] == "mp1"
        # 1 795 000 000 s after the epoch, in UTC with milliseconds.
        assert first["@timestamp"] == "2026-11-18T11:06:40.000Z"
        (obj,) = first["objects"]
        parsed = parse_object(obj)
        assert (parsed["id"], parsed["type"], parsed["confidence"]) == (7, "0", 0.875)
        assert (parsed["left"], parsed["top"], parsed["right"], parsed["bottom"]) == (
            10.0,
            20.0,
            50.5,
            80.25,
        )

        # Redis goes down; 40 frames keep coming; it comes back empty (no persistence).
        server.stop()
        for i in range(10, 50):
            pub.publish(_frame(i))
            time.sleep(0.01)
        time.sleep(0.5)
        server.start()
        client = redis.Redis(host="127.0.0.1", port=server.port)
        wait_until(lambda: client.exists("owl") and client.xlen("owl") >= 40, 20, "backlog")
        ids = [int(e["id"]) for e in _entries(client, "owl")]
        # The frame counter is the node's; the 40 buffered frames arrive in order, none lost.
        assert len(ids) == 40 and ids == sorted(ids) and len(set(ids)) == 40
        assert node.alive() and "Traceback" not in node.output()


def test_overflow_while_redis_is_down_is_counted_in_diagnostics(ros, start_node):
    with RedisTestServer() as server:
        server.stop()  # down from the start
        start_node(
            "metropolis_publisher",
            namespace="mp2",
            parameters={"port": server.port, "buffer_size": 5},
        )
        diags = ros.subscribe(DiagnosticArray, "/diagnostics", qos=50)
        pub = ros.node.create_publisher(Detection2DArray, "/mp2/detections", 100)
        wait_until(lambda: pub.get_subscription_count() > 0, 20, "subscriber")
        time.sleep(0.3)
        for i in range(12):
            pub.publish(_frame(i))
            time.sleep(0.01)

        def dropped() -> str | None:
            for msg in reversed(list(diags.messages)):
                for st in msg.status:
                    if st.name.endswith("/mp2/metropolis_publisher"):
                        values = {kv.key: kv.value for kv in st.values}
                        if values.get("frames") == "12":
                            return values["dropped (buffer full)"]
            return None

        wait_until(lambda: dropped() is not None, 10, "diagnostics after 12 frames")
        assert dropped() == "7"  # 12 frames, 5 kept
