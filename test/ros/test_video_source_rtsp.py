"""video_source on a real RTSP server (GStreamer, 127.0.0.1) that goes away and comes back."""

from __future__ import annotations

import time

import pytest
from sensor_msgs.msg import Image

from edge_vision.srv import GetSourceInfo
from edge_vision.testing.rtsp_server import RtspTestServer, rtsp_server_unavailable_reason

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture
def rtsp_server():
    reason = rtsp_server_unavailable_reason()
    if reason:
        pytest.fail(f"GStreamer RTSP server unavailable ({reason}): run `make setup`")
    with RtspTestServer(width=320, height=240, fps=15) as server:
        yield server


def test_rtsp_stream_survives_a_server_restart(ros, start_node, rtsp_server):
    node = start_node("video_source", parameters={"uri": rtsp_server.url, "retry_delay": 0.2})
    frames = ros.collect(Image, "/image_raw", 5, timeout=30)
    assert (frames[0].width, frames[0].height, frames[0].encoding) == (320, 240, "bgr8")

    rtsp_server.stop()
    time.sleep(2.0)  # long enough for the node to notice the drop
    info = ros.call(GetSourceInfo, "/video_source/get_info")
    assert info.state in ("reconnecting", "error", "opening"), info
    assert node.alive()

    restarted = time.monotonic()
    rtsp_server.start()
    collector = ros.subscribe(Image, "/image_raw")
    collector.wait_for(5, timeout=30)
    resumed_after = time.monotonic() - restarted
    info = ros.call(GetSourceInfo, "/video_source/get_info")
    assert info.state == "streaming" and info.kind == "rtsp"
    assert info.reconnects >= 1
    assert node.alive() and "Traceback" not in node.output()
    print(f"frames resumed {resumed_after:.2f} s after the server came back")
