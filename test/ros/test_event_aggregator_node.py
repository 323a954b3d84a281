"""event_aggregator over real DDS: events from a real detector on a real video, the store
before publication (kill -9 loses nothing announced), the query service, END on silence."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray

from edge_vision.core.detections import Detections
from edge_vision.events import EventState, EventStore
from edge_vision.msg import Event as EventMsg
from edge_vision.nodes.event_aggregator import events_qos
from edge_vision.ros.conversions import detections_to_msg, msg_to_event
from edge_vision.ros.image_conversion import ns_to_stamp, stamp_to_ns
from edge_vision.srv import QueryEvents
from edge_vision.testing.media import VTEST, require
from edge_vision.testing.ros_harness import wait_until

pytestmark = pytest.mark.ros


def _integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


@pytest.mark.slow
def test_real_video_events_survive_kill_9_of_the_aggregator(ros, start_node, tmp_path):
    from edge_vision.models.zoo import pull

    pull("nanodet-m")
    ns = "ev1"
    db = tmp_path / "events.db"
    aggregator_params = {
        "database": str(db),
        "model": "nanodet-m",
        "min_frames": 3,
        "end_after_s": 0.5,
        "update_every_s": 0.5,
    }
    aggregator = start_node(
        "event_aggregator",
        namespace=ns,
        parameters=aggregator_params,
        remappings={"detections": "tracks"},
    )
    events = ros.subscribe(EventMsg, f"/{ns}/events", qos=events_qos())
    # Matched before the first event, so the test sees every message from the start.
    assert ros.wait_for_publisher(f"/{ns}/events"), aggregator.output()
    time.sleep(0.5)
    start_node(
        "video_source",
        namespace=ns,
        parameters={"uri": str(require(VTEST)), "loop": True, "realtime": True},
    )
    start_node("detector", namespace=ns, remappings={"image": "image_raw"})
    # vtest.avi has walkers, and a false "truck" now and then: track people only.
    start_node("tracker", namespace=ns, parameters={"classes": ["person"]})
    # Walkers come and go in vtest.avi: wait for a good number of messages including ENDs.
    wait_until(
        lambda: (
            len(events.messages) >= 25
            and any(m.state == EventMsg.STATE_END for m in events.messages)
        ),
        120,
        "25 event messages with an END",
    )
    aggregator.stop(signal.SIGKILL)  # mid-stream: frames and events keep coming
    published = [msg_to_event(m) for m in list(events.messages)]

    # Fields a consumer relies on.
    for e, m in zip(published, events.messages, strict=False):
        assert (e.stream, e.model, e.label) == ("ev1", "nanodet-m", "person")
        assert e.track_id.isdigit()  # tracked objects: one event per track
        assert e.begin_ns <= e.end_ns == stamp_to_ns(m.header.stamp)
        assert e.max_score >= e.score > 0 and e.frames >= 3
    first = {}
    for e in published:
        first.setdefault(e.id, e.state)
    assert set(first.values()) == {EventState.NEW}  # every event's first message is NEW

    # Every event published before the kill is in the store, at least as far along.
    assert _integrity(db) == "ok"
    with EventStore(db) as store:
        for e in published:
            stored = store.get(e.id)
            assert stored is not None, f"published event {e.id} missing from the store"
            assert stored.frames >= e.frames and stored.end_ns >= e.end_ns
            assert stored.begin_ns == e.begin_ns and stored.track_id == e.track_id
            if e.state == EventState.END:
                assert stored.state == EventState.END and stored.frames == e.frames

    print(f"kill -9 after {len(published)} event messages of {len(first)} events; all stored")

    # Restart on the same database: it opens, keeps the old events and adds new ones.
    before = {e.id for e in published}
    events.clear()
    start_node(
        "event_aggregator",
        namespace=ns,
        parameters=aggregator_params,
        remappings={"detections": "tracks"},
    )
    wait_until(lambda: len(events.messages) >= 3, 60, "events after the restart")
    assert {m.id for m in events.messages}.isdisjoint(before)
    response = ros.call(
        QueryEvents, f"/{ns}/event_aggregator/query", QueryEvents.Request(limit=1000)
    )
    assert response.success, response.message
    assert before <= {m.id for m in response.events}


def _label_frame(stamp_ns: int, labels: list[tuple[str, float]]) -> Detection2DArray:
    n = len(labels)
    dets = Detections(
        np.tile(np.array([[10, 10, 50, 50]], np.float32), (n, 1)),
        np.array([s for _, s in labels], np.float32),
        np.arange(n, dtype=np.int32),
        labels=[name for name, _ in labels],
    )
    return detections_to_msg(dets, Header(stamp=ns_to_stamp(stamp_ns), frame_id="cam"))


def test_untracked_events_end_on_silence_and_the_query_service_filters(ros, start_node, tmp_path):
    ns = "ev2"
    db = tmp_path / "events.db"
    aggregator = start_node(
        "event_aggregator",
        namespace=ns,
        parameters={"database": str(db), "min_frames": 2, "end_after_s": 0.3},
    )
    pub = ros.node.create_publisher(Detection2DArray, f"/{ns}/detections", 10)
    events = ros.subscribe(EventMsg, f"/{ns}/events", qos=events_qos())
    wait_until(lambda: pub.get_subscription_count() > 0, 15, "aggregator subscribed")
    t0 = 1_700_000_000 * 10**9
    # No LabelInfo: labels are the class ids; class 0 scores 0.9, class 1 scores 0.4.
    for i in range(5):
        pub.publish(_label_frame(t0 + i * 100_000_000, [("a", 0.9), ("b", 0.4)]))
        time.sleep(0.05)
    # Then silence: the timer ends both events although no frame says so.
    wait_until(
        lambda: sum(m.state == EventMsg.STATE_END for m in events.messages) == 2,
        10,
        "two ENDs after the input stopped",
    )
    ends = {m.label: m for m in events.messages if m.state == EventMsg.STATE_END}
    assert set(ends) == {"0", "1"}
    assert ends["0"].frames == 5 and stamp_to_ns(ends["0"].end) == t0 + 400_000_000
    assert ends["0"].track_id == "" and ends["0"].bbox.size_x == 0  # frame-level event

    query = f"/{ns}/event_aggregator/query"
    r = ros.call(QueryEvents, query, QueryEvents.Request(min_score=0.5))
    assert r.success and [m.label for m in r.events] == ["0"]
    r = ros.call(QueryEvents, query, QueryEvents.Request(label="1"))
    assert r.success and [(m.label, m.state) for m in r.events] == [("1", EventMsg.STATE_END)]
    later = Time(sec=t0 // 10**9 + 10)
    r = ros.call(QueryEvents, query, QueryEvents.Request(since=later))
    assert r.success and r.events == []
    r = ros.call(QueryEvents, query, QueryEvents.Request(since=later, until=Time(sec=1)))
    assert not r.success and r.message == "since is after until"
    r = ros.call(QueryEvents, query, QueryEvents.Request(min_score=1.5))
    assert not r.success and "min_score" in r.message

    # SIGINT with an event open: it is ended and stored at shutdown. (A long end_after_s, set
    # at run time, keeps the timer from ending it first.)
    (ok,) = ros.set_parameters(aggregator.fqn, {"end_after_s": 60.0})
    assert ok.successful, ok.reason
    events.clear()
    pub.publish(_label_frame(t0 + 10 * 10**9, [("c", 0.7)]))
    pub.publish(_label_frame(t0 + 10 * 10**9 + 10**8, [("c", 0.7)]))
    wait_until(lambda: len(events.messages) >= 1, 10, "NEW of the third event")
    assert events.messages[0].state == EventMsg.STATE_NEW
    assert aggregator.stop(signal.SIGINT) == 0
    with EventStore(db) as store:
        (last,) = store.query(since_ns=t0 + 5 * 10**9)
    assert last.id == events.messages[0].id
    assert last.state == EventState.END and last.frames == 2


def test_tracker_zones_become_event_attributes(ros, start_node, tmp_path):
    ns = "ev3"
    start_node("tracker", namespace=ns, parameters={"zones": ["door: 0,100 640,100 640,480 0,480"]})
    start_node(
        "event_aggregator",
        namespace=ns,
        parameters={"database": str(tmp_path / "e.db"), "min_frames": 2, "end_after_s": 5.0},
        remappings={"detections": "tracks"},
    )
    pub = ros.node.create_publisher(Detection2DArray, f"/{ns}/detections", 10)
    events = ros.subscribe(EventMsg, f"/{ns}/events", qos=events_qos())
    wait_until(lambda: pub.get_subscription_count() > 0, 15, "tracker subscribed")
    assert ros.wait_for_publisher(f"/{ns}/events")
    time.sleep(0.5)
    t0 = 1_700_000_000 * 10**9
    for i in range(15):  # box bottom 40, 50, ... 180: enters the door zone (y >= 100) at i = 6
        box = np.array([[100, 10 * i - 20, 140, 10 * i + 40]], np.float32)
        dets = Detections(box, np.array([0.9], np.float32), np.array([0], np.int32))
        pub.publish(detections_to_msg(dets, Header(stamp=ns_to_stamp(t0 + i * 10**8))))
        time.sleep(0.05)
    wait_until(
        lambda: any(
            {kv.key: kv.value for kv in m.attributes}.get("zone") == "door" for m in events.messages
        ),
        10,
        "an event with zone=door",
    )
    zones = [{kv.key: kv.value for kv in m.attributes}.get("zone") for m in events.messages]
    assert len({m.id for m in events.messages}) == 1  # one walker, one event
    # Outside first (empty zone), then in the door zone, announced by an UPDATE.
    assert "" in zones and zones.index("") < zones.index("door")
    door = events.messages[zones.index("door")]
    assert door.state == EventMsg.STATE_UPDATE and stamp_to_ns(door.end) >= t0 + 6 * 10**8


def test_detections_before_the_label_info_wait_for_it_and_are_named(ros, start_node, tmp_path):
    from vision_msgs.msg import LabelInfo

    from edge_vision.ros.conversions import label_info_msg
    from edge_vision.ros.qos import latched_qos

    ns = "ev5"
    start_node(
        "event_aggregator",
        namespace=ns,
        parameters={"database": str(tmp_path / "e.db"), "min_frames": 2, "labels_wait_s": 10.0},
    )
    pub = ros.node.create_publisher(Detection2DArray, f"/{ns}/detections", 10)
    events = ros.subscribe(EventMsg, f"/{ns}/events", qos=events_qos())
    wait_until(lambda: pub.get_subscription_count() > 0, 15, "aggregator subscribed")
    t0 = 1_700_000_000 * 10**9
    for i in range(4):  # numeric class ids, as a detector publishes them
        pub.publish(_label_frame(t0 + i * 100_000_000, [("unused", 0.9)]))
        time.sleep(0.05)
    time.sleep(1.0)
    assert events.messages == []  # held: no LabelInfo yet
    labels = ros.node.create_publisher(LabelInfo, f"/{ns}/labels", latched_qos())
    labels.publish(label_info_msg(["person"], Header()))
    wait_until(lambda: len(events.messages) >= 1, 15, "events once the labels arrived")
    assert {m.label for m in events.messages} == {"person"}
    assert events.messages[0].frames >= 2 and stamp_to_ns(events.messages[0].begin) == t0
