"""recorder over real DDS: video_source (test pattern, real time) -> recorder, ~/record from a
client and from action_trigger's record action, a bag of other topics read back with rosbags,
kill -9 in the middle of a clip, and a really full disk (a small tmpfs in a private mount
namespace) that stops a clip while the node stays up."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile
from vision_msgs.msg import Detection2D, Detection2DArray

from edge_vision.events import Event, EventState
from edge_vision.msg import Event as EventMsg
from edge_vision.nodes.event_aggregator import events_qos
from edge_vision.ros.conversions import event_to_msg
from edge_vision.ros.image_conversion import ns_to_stamp
from edge_vision.sources.test_pattern import read_pattern_code
from edge_vision.srv import Record
from edge_vision.testing.ros_harness import wait_until

pytestmark = pytest.mark.ros

PATTERN = "test://pattern?width=320&height=240&fps=30"
PERIOD_NS = 10**9 // 30


def _status(diagnostics, fqn: str):
    for msg in reversed(list(diagnostics.messages)):
        for status in msg.status:
            if status.name == fqn:
                return status
    return None


def _values(diagnostics, fqn: str) -> dict[str, str]:
    status = _status(diagnostics, fqn)
    return {kv.key: kv.value for kv in status.values} if status is not None else {}


def _decoded(path: str | Path) -> list[int]:
    with av.open(str(path)) as container:
        return [
            read_pattern_code(f.to_ndarray(format="bgr24"))[0] for f in container.decode(video=0)
        ]


def _sidecar(path: str | Path) -> dict:
    return json.loads(Path(str(path)[:-4] + ".json").read_text())


def _pipeline(start_node, ns: str, out: Path, **recorder_params):
    source = start_node("video_source", namespace=ns, parameters={"uri": PATTERN})
    recorder = start_node(
        "recorder",
        namespace=ns,
        remappings={"image": "image_raw"},
        parameters={"output_dir": str(out), "fsync": False, **recorder_params},
    )
    return source, recorder


def test_record_service_writes_a_clip_covering_the_window(ros, start_node, tmp_path):
    out = tmp_path / "clips"
    diagnostics = ros.subscribe(DiagnosticArray, "/diagnostics", qos=QoSProfile(depth=50))
    _, recorder = _pipeline(start_node, "rec1", out, pre_s=2.0, buffer_s=3.0)
    wait_until(
        lambda: float(_values(diagnostics, recorder.fqn).get("buffer seconds", 0)) >= 2.5,
        30,
        "2.5 s of video in the pre-event buffer",
    )
    ros.wait_for_service(Record, "/rec1/recorder/record")  # so the call below is all we time
    called = time.time_ns()
    reply = ros.call(
        Record,
        "/rec1/recorder/record",
        Record.Request(event_id="ev-1", reason="manual test", pre_s=-1.0, duration_s=2.0),
    )
    answered = time.time_ns()
    assert reply.success, reply.message
    assert (answered - called) / 1e6 < 500  # answered at once, not when the file is done
    path = Path(reply.path)
    assert path.parent == out and path.name.startswith("rec1_") and "manual_test" in path.name
    assert not path.exists()
    wait_until(path.exists, 15, f"{path} to appear")
    appeared = time.time_ns()
    meta = _sidecar(path)
    trigger = meta["trigger_stamp_ns"]
    # The source clock is the capture stamps: the trigger is "now" at the call.
    assert abs(trigger - called) / 1e6 < 300
    # The file appears shortly after the window ends (the end + one frame + the write).
    assert (appeared - (trigger + 2 * 10**9)) / 1e9 < 3.0
    got = _decoded(path)
    assert len(got) == meta["frames"]
    assert got == list(range(got[0], got[-1] + 1)), "frames missing or repeated"
    first, last = meta["first_frame_stamp_ns"], meta["last_frame_stamp_ns"]
    # pre_s (the node's default 2 s) from the keyframe at or before it: at most a GOP (and the
    # frame interval, which a loaded machine's real-time source stretches now and then) more.
    assert 2.0 <= (trigger - first) / 1e9 < 2.0 + 1.0 + 0.25
    # duration_s after the trigger, to one frame (+ the source's jitter).
    assert abs((last - (trigger + 2 * 10**9)) / 1e9) <= PERIOD_NS / 1e9 + 0.03
    assert abs(len(got) - (last - first) / PERIOD_NS - 1) <= 1  # ~30 fps, none dropped
    assert meta["event_ids"] == ["ev-1"] and meta["source_topic"] == "/rec1/image_raw"
    assert meta["stream"] == "rec1" and (meta["width"], meta["height"]) == (320, 240)
    wait_until(
        lambda: _values(diagnostics, recorder.fqn).get("clips written") == "1", 10, "diagnostics"
    )
    values = _values(diagnostics, recorder.fqn)
    assert float(values["encode ms per frame"]) > 0
    assert int(values["buffer bytes"]) > 0 and int(values["bytes used"]) > 0
    assert values["frames dropped (encoder busy)"] == "0"
    assert recorder.alive()


def _write_rules(path: Path) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "rules": [
                    {
                        "name": "record_person",
                        "and": [{"key": "label", "operator": "==", "value": "person"}],
                        "action": {"name": "record", "duration_s": 1.5},
                    }
                ]
            }
        )
    )


def _event(eid: str, label: str = "person") -> EventMsg:
    now = time.time_ns()
    return event_to_msg(
        Event(
            id=eid,
            stream="rec2",
            model="nanodet-m",
            label=label,
            class_id="0",
            score=0.9,
            max_score=0.9,
            begin_ns=now - 10**9,
            end_ns=now,
            frames=10,
            track_id="7",
            state=EventState.NEW,
        )
    )


def test_action_trigger_record_action_end_to_end_with_a_bag(ros, start_node, tmp_path):
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    out = tmp_path / "clips"
    rules = tmp_path / "rules.yaml"
    _write_rules(rules)
    _, recorder = _pipeline(
        start_node, "rec2", out, buffer_s=3.0, bag_topics=["events", "detections"]
    )
    trigger = start_node(
        "action_trigger",
        namespace="rec2",
        parameters={
            "rules_file": str(rules),
            "actions": ["record: record"],
            "record.pre_s": 1.0,
            "record.max_duration_s": 10.0,
        },
    )
    events = ros.node.create_publisher(EventMsg, "/rec2/events", events_qos())
    detections = ros.node.create_publisher(
        Detection2DArray, "/rec2/detections", QoSProfile(depth=10)
    )
    wait_until(lambda: events.get_subscription_count() >= 2, 30, "action_trigger and recorder")
    wait_until(lambda: detections.get_subscription_count() >= 1, 30, "the recorder on detections")
    assert recorder.wait_for_output("bag topic /rec2/events", 10)
    time.sleep(2.5)  # pre-roll in the buffer

    def detection(n: int) -> Detection2DArray:
        msg = Detection2DArray()
        msg.header.stamp = ns_to_stamp(time.time_ns())
        det = Detection2D(id=str(n))
        det.bbox.size_x = float(n)
        msg.detections.append(det)
        return msg

    for n in range(5):
        detections.publish(detection(n))
        time.sleep(0.05)
    events.publish(_event("car-1", "car"))  # no rule for cars: recorded in the bag only
    events.publish(_event("person-1"))
    for n in range(5, 10):
        detections.publish(detection(n))
        time.sleep(0.05)
    assert trigger.wait_for_output("record record: event person-1 ->", 15), trigger.output()
    wait_until(lambda: list(out.glob("*.mp4")), 15, "the clip")
    (clip,) = out.glob("*.mp4")
    meta = _sidecar(clip)
    assert meta["event_ids"] == ["person-1"] and meta["reasons"] == ["person rec2"]
    assert meta["requested"]["pre_s"] == 1.0 and meta["requested"]["duration_s"] == 1.5
    got = _decoded(clip)
    assert got == list(range(got[0], got[-1] + 1)) and len(got) == meta["frames"]
    assert 1.0 <= meta["pre_s_achieved"] < 2.25
    assert abs(meta["post_s_achieved"] - 1.5) <= PERIOD_NS / 1e9 + 0.03

    # The bag: both topics over the clip's window, readable with rosbags (types from the
    # installed .msg files, the package's own Event included).
    bag = out / meta["bag"]
    assert bag.name == clip.stem + ".rosbag2" and (bag / "metadata.yaml").is_file()
    with AnyReader([bag], default_typestore=get_typestore(Stores.EMPTY)) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        assert topics == {
            "/rec2/events": "edge_vision/msg/Event",
            "/rec2/detections": "vision_msgs/msg/Detection2DArray",
        }
        decoded: dict[str, list] = {"/rec2/events": [], "/rec2/detections": []}
        for connection, _t, raw in reader.messages():
            decoded[connection.topic].append(reader.deserialize(raw, connection.msgtype))
    assert [e.id for e in decoded["/rec2/events"]] == ["car-1", "person-1"]
    assert decoded["/rec2/events"][1].label == "person"
    assert [d.detections[0].id for d in decoded["/rec2/detections"]] == [str(n) for n in range(10)]
    assert meta["bag_messages"] == {"/rec2/events": 2, "/rec2/detections": 10}


def test_kill_9_in_the_middle_of_a_clip_and_the_restart_cleans_up(ros, start_node, tmp_path):
    out = tmp_path / "clips"
    _, recorder = _pipeline(start_node, "rec3", out, buffer_s=1.0, pre_s=1.0)
    assert recorder.wait_for_output("buffering", 20)
    time.sleep(1.5)
    reply = ros.call(
        Record, "/rec3/recorder/record", Record.Request(event_id="long", duration_s=60.0)
    )
    assert reply.success, reply.message
    final = Path(reply.path)
    temp = final.parent / f".{final.stem}.part" / final.name
    wait_until(lambda: temp.exists() and temp.stat().st_size > 50_000, 20, "the clip to grow")
    recorder.process.send_signal(signal.SIGKILL)
    recorder.wait(10)
    assert not final.exists() and list(out.glob("*.mp4")) == []
    assert temp.exists()
    restarted = start_node(
        "recorder",
        name="recorder",
        namespace="rec3",
        remappings={"image": "image_raw"},
        parameters={"output_dir": str(out)},
        log_dir=tmp_path / "second",
    )
    assert restarted.wait_for_output("removed leftover of an interrupted recording", 20)
    assert not temp.parent.exists()
    assert restarted.alive()


def test_sigint_during_a_clip_finishes_it_with_what_it_has(ros, start_node, tmp_path):
    out = tmp_path / "clips"
    _, recorder = _pipeline(start_node, "rec5", out, buffer_s=2.0)
    assert recorder.wait_for_output("buffering", 20)
    time.sleep(2.0)
    reply = ros.call(Record, "/rec5/recorder/record", Record.Request(pre_s=1.0, duration_s=60.0))
    assert reply.success, reply.message
    time.sleep(1.5)
    assert recorder.stop(signal.SIGINT, timeout=20) == 0
    meta = _sidecar(reply.path)
    assert meta["ended_by"] == "shutdown"
    got = _decoded(reply.path)
    assert got == list(range(got[0], got[-1] + 1)) and len(got) == meta["frames"]
    assert 1.0 < meta["post_s_achieved"] < 5.0


def _node_in_small_tmpfs(
    mount: Path, size: str, ns: str, params: dict, log_path: Path
) -> subprocess.Popen | None:
    """The recorder node in a private mount namespace with a small tmpfs at ``mount`` (same
    network, so DDS on loopback works as usual); None where that cannot be made."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    flags = ["-m"] if os.geteuid() == 0 else ["-Urm"]
    probe = subprocess.run(
        [unshare, *flags, "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {mount}"],
        capture_output=True,
        timeout=20,
    )
    if probe.returncode != 0:
        return None
    params_file = log_path.with_suffix(".params.yaml")
    params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    node = (
        f"exec '{sys.executable}' -m edge_vision.nodes.recorder --ros-args -r __ns:=/{ns} "
        f"-r image:=image_raw --params-file '{params_file}'"
    )
    log = open(log_path, "wb")  # noqa: SIM115 - the child holds it
    return subprocess.Popen(
        [unshare, *flags, "sh", "-c", f"mount -t tmpfs -o size={size} tmpfs {mount} && {node}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def test_a_full_disk_stops_the_clip_with_a_clear_error_and_the_node_stays_up(
    ros, start_node, tmp_path
):
    mount = tmp_path / "small_fs"
    mount.mkdir()
    log_path = tmp_path / "recorder.log"
    # FFmpeg's testsrc2 at 640x480, crf 0 (lossless) is about 0.7 MB/s: 3 MB fill in seconds.
    source = start_node(
        "video_source",
        namespace="rec4",
        parameters={"uri": "test://testsrc2?width=640&height=480&fps=30"},
    )
    proc = _node_in_small_tmpfs(
        mount,
        "3m",
        "rec4",
        {"output_dir": str(mount / "clips"), "crf": 0, "min_free_mb": 0, "buffer_s": 1.0},
        log_path,
    )
    if proc is None:
        pytest.skip("cannot mount a small tmpfs in a private mount namespace here")
    diagnostics = ros.subscribe(DiagnosticArray, "/diagnostics", qos=QoSProfile(depth=50))
    try:
        wait_until(
            lambda: float(_values(diagnostics, "/rec4/recorder").get("buffer seconds", 0)) >= 1.0,
            30,
            "a buffered second",
        )
        # A short clip passes the up-front check (its estimate fits in what is free); the next
        # trigger extends it well past what the file system holds.
        first = ros.call(
            Record, "/rec4/recorder/record", Record.Request(event_id="big", duration_s=2.0)
        )
        assert first.success, first.message
        more = ros.call(
            Record, "/rec4/recorder/record", Record.Request(event_id="big", duration_s=30.0)
        )
        assert more.success and more.message.startswith("extended"), more.message
        wait_until(
            lambda: "disk full" in log_path.read_text(errors="replace"), 30, "the disk to fill"
        )
        text = log_path.read_text(errors="replace")
        assert "stopped: disk full: No space left on device" in text, text[-2000:]
        status = None

        def error_reported() -> bool:
            nonlocal status
            status = _status(diagnostics, "/rec4/recorder")
            return status is not None and status.level == b"\x02" and "disk full" in status.message

        wait_until(error_reported, 10, "ERROR in diagnostics")
        assert proc.poll() is None  # the node is up
        # A later request: the disk is full again at once (the buffer's bitrate does not fit
        # in what is free), and the reply says so.
        later = ros.call(
            Record, "/rec4/recorder/record", Record.Request(event_id="next", duration_s=30.0)
        )
        assert not later.success and later.message.startswith("disk full:"), later.message
        assert proc.poll() is None and source.alive()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        diagnostics.destroy()
    assert code == 0, log_path.read_text(errors="replace")[-2000:]


def test_bad_parameters_are_refused(ros, start_node, tmp_path):
    bad = start_node(
        "recorder", name="bad", parameters={"output_dir": str(tmp_path), "preset": "warp"}
    )
    assert bad.wait(20) == 2
    assert "preset" in bad.output()
    node = start_node("recorder", name="ok", parameters={"output_dir": str(tmp_path / "c")})
    assert node.wait_for_output("buffering", 20)
    refused = ros.set_parameters(node.fqn, {"file_pattern": "{stream}_{nope}"})
    assert not refused[0].successful and "nope" in refused[0].reason
    assert ros.set_parameters(node.fqn, {"pre_s": 3.0})[0].successful
    no_video = ros.call(Record, "/ok/record", Record.Request(event_id="x"))
    assert not no_video.success and "no frames" in no_video.message
