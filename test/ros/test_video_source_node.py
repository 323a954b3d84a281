"""video_source as a real process, observed over real DDS."""

from __future__ import annotations

import itertools
import signal
import statistics
import time

import pytest
from sensor_msgs.msg import Image

from edge_vision.ros.image_conversion import image_to_numpy, stamp_to_ns
from edge_vision.srv import GetSourceInfo
from edge_vision.testing.media import VTEST, require

pytestmark = pytest.mark.ros


def test_frames_from_a_real_video_have_size_encoding_and_capture_stamps(ros, start_node):
    node = start_node("video_source", namespace="cam0", parameters={"uri": str(require(VTEST))})
    collector = ros.subscribe(Image, "/cam0/image_raw")
    msgs = collector.wait_for(12, timeout=20)
    arrivals = collector.arrival_ns[: len(msgs)]
    for msg in msgs:
        assert (msg.width, msg.height, msg.encoding) == (768, 576, "bgr8")
        assert msg.step == 768 * 3 and len(msg.data) == msg.step * msg.height
        assert msg.header.frame_id == "camera"
        assert image_to_numpy(msg).std() > 10  # real picture content, not a blank frame
    stamps = [stamp_to_ns(m.header.stamp) for m in msgs]
    assert stamps == sorted(stamps)
    # Stamped at capture: each arrives shortly after its stamp, never before it.
    latencies_ms = [(a - s) / 1e6 for a, s in zip(arrivals, stamps, strict=True)]
    assert all(0 <= lat < 500 for lat in latencies_ms), latencies_ms
    # Real-time pacing of a 10 fps file.
    intervals = [(b - a) / 1e9 for a, b in itertools.pairwise(stamps[2:])]
    assert statistics.median(intervals) == pytest.approx(0.1, abs=0.02)
    assert node.alive()


def test_get_info_service_across_processes(ros, start_node):
    start_node("video_source", parameters={"uri": str(require(VTEST))})
    ros.collect(Image, "/image_raw", 2)
    info = ros.call(GetSourceInfo, "/video_source/get_info")
    assert (info.kind, info.state, info.uri) == ("file", "streaming", str(VTEST))
    assert (info.width, info.height) == (768, 576)
    assert info.nominal_fps == pytest.approx(10.0)
    assert info.frames_published >= 2 and info.last_error == ""


def test_parameters_set_at_run_time_take_effect(ros, start_node):
    node = start_node(
        "video_source", parameters={"uri": str(require(VTEST)), "realtime": False, "fps": 30.0}
    )
    ros.collect(Image, "/image_raw", 1)
    results = ros.set_parameters(node.fqn, {"width": 320, "encoding": "mono8"})
    assert all(r.successful for r in results), [r.reason for r in results]
    collector = ros.subscribe(Image, "/image_raw")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        msgs = collector.wait_for(len(collector.messages) + 1, timeout=5)
        if (msgs[-1].width, msgs[-1].height, msgs[-1].encoding) == (320, 240, "mono8"):
            break
    else:
        pytest.fail("frames did not change to 320x240 mono8 after the parameter set")
    assert ros.get_parameters(node.fqn, ["width", "encoding"]) == {
        "width": 320,
        "encoding": "mono8",
    }

    # Invalid values are refused with a reason, and the running value stays.
    bad = ros.set_parameters(node.fqn, {"encoding": "yuv420"})
    assert not bad[0].successful and "yuv420" in bad[0].reason
    out_of_range = ros.set_parameters(node.fqn, {"fps": -1.0})
    assert not out_of_range[0].successful
    assert ros.get_parameters(node.fqn, ["encoding", "fps"]) == {"encoding": "mono8", "fps": 30.0}


def test_sigint_stops_the_node_cleanly(ros, start_node):
    node = start_node(
        "video_source", parameters={"uri": "test://pattern?width=320&height=240&fps=30"}
    )
    ros.collect(Image, "/image_raw", 3)
    assert node.stop(signal.SIGINT, timeout=10) == 0
    assert "Traceback" not in node.output()


def test_sigterm_stops_the_node_cleanly(ros, start_node):
    node = start_node("video_source", parameters={"uri": "test://pattern?width=320&height=240"})
    ros.collect(Image, "/image_raw", 1)
    assert node.stop(signal.SIGTERM, timeout=10) == 0
    assert "Traceback" not in node.output()


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("/no/such/video.mp4", "/no/such/video.mp4"),
        ("/dev/video99", "/dev/video99"),
        ("rtsp://127.0.0.1:1/none", "127.0.0.1:1"),
        ("gopher://camera", "gopher"),
    ],
)
def test_bad_sources_give_a_clear_error_and_the_node_stays_up(ros, start_node, uri, expected):
    node = start_node("video_source", parameters={"uri": uri})
    assert node.wait_for_output("[ERROR]", timeout=15), node.output()
    time.sleep(0.5)
    assert node.alive(), node.output()
    out = node.output()
    error_lines = [line for line in out.splitlines() if "[ERROR]" in line]
    assert any(expected in line for line in error_lines), out
    assert "Traceback" not in out
    # A first request lost to discovery is resent (edge_vision.ros.services); a loaded machine
    # may still take a while.
    info = ros.call(GetSourceInfo, "/video_source/get_info", timeout=30)
    assert info.state in ("error", "opening") and expected in info.last_error


def test_a_failed_source_recovers_when_the_uri_is_fixed(ros, start_node):
    node = start_node("video_source", parameters={"uri": "/no/such/file.avi"})
    assert node.wait_for_output("[ERROR]", timeout=15)
    results = ros.set_parameters(node.fqn, {"uri": str(require(VTEST))})
    assert results[0].successful
    msgs = ros.collect(Image, "/image_raw", 3, timeout=15)
    assert msgs[0].width == 768


def test_end_of_file_without_loop_can_stop_the_node(ros, start_node, tmp_path):
    import cv2
    import numpy as np

    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((48, 64, 3), i * 40, np.uint8))
    node = start_node(
        "video_source",
        parameters={"uri": str(tmp_path), "loop": False, "exit_on_end": True, "realtime": False},
    )
    assert node.wait(timeout=20) == 0, node.output()
    assert "end of" in node.output()


def test_start_up_parameters_int_for_double_is_accepted_and_out_of_range_is_a_clear_error(
    ros, start_node
):
    # YAML `fps: 15` is an int; the double parameter takes it as 15.0 rather than refusing.
    node = start_node("video_source", parameters={"uri": "test://pattern", "fps": 15})
    ros.collect(Image, "/image_raw", 1)
    assert ros.get_parameters(node.fqn, ["fps"]) == {"fps": 15.0}
    node.stop()

    bad = start_node("video_source", name="bad_source", parameters={"width": -5})
    assert bad.wait(timeout=20) == 2
    out = bad.output()
    assert "width" in out and "-5" in out and "Traceback" not in out
