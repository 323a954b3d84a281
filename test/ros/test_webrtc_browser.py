"""A real headless Chromium sends its (fake) webcam to video_source over WebRTC; frames arrive
on ``image_raw``. All of it runs in a loopback-only network namespace (nothing can leave the
machine): ``edge_vision.testing.webrtc_scenario`` started through
``edge_vision.testing.browser.run_in_loopback_namespace``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from edge_vision.testing.browser import browser_unavailable_reason, run_in_loopback_namespace
from edge_vision.testing.webrtc_scenario import parse_result

pytestmark = [pytest.mark.ros, pytest.mark.slow]

WIDTH, HEIGHT = 640, 480


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict:
    reason = browser_unavailable_reason(namespace=True)
    if reason:
        pytest.skip(f"browser test not possible here: {reason}")
    log_dir: Path = tmp_path_factory.mktemp("webrtc_scenario")
    # A domain of its own; the namespace already keeps its DDS traffic away from ours.
    domain_id = 1 + (int(os.environ.get("ROS_DOMAIN_ID", "0")) + 50) % 100
    done = run_in_loopback_namespace(
        [
            sys.executable,
            "-m",
            "edge_vision.testing.webrtc_scenario",
            "--domain-id",
            str(domain_id),
            "--width",
            str(WIDTH),
            "--height",
            str(HEIGHT),
            "--hold-s",
            "4",
            "--log-dir",
            str(log_dir),
        ],
        timeout_s=200,
    )
    result = parse_result(done.stdout)
    assert result is not None, f"no result (exit {done.returncode}):\n{done.stderr[-4000:]}"
    node_log = result.pop("node_log_tail", "")
    print(json.dumps(result, indent=1))
    assert result["ok"], f"{result.get('traceback')}\nnode log:\n{node_log}"
    result["node_log_tail"] = node_log
    return result


def test_everything_ran_in_a_loopback_only_namespace(scenario: dict) -> None:
    assert scenario["interfaces"] == ["lo"]
    for phase in ("webcam", "coded"):
        page = scenario[phase]["page"]
        # The ICE pair Chromium used: host candidates on 127.0.0.1 at both ends, UDP.
        assert page["local"]["address"] == "127.0.0.1", page
        assert page["remote"]["address"] == "127.0.0.1", page
        assert page["local"]["type"] == page["remote"]["type"] == "host"


def test_browser_webcam_frames_arrive_on_image_raw(scenario: dict) -> None:
    assert scenario["state_before_browser"] == "reconnecting"  # waiting for a browser
    webcam = scenario["webcam"]
    assert webcam["page"]["label"] == "fake_device_0"  # Chromium's fake webcam
    assert webcam["sizes"] == [f"{WIDTH}x{HEIGHT}"]
    # Held for 4 s at the fake camera's 20 fps: allow for a loaded 2-core machine.
    assert webcam["frames"] >= 30, webcam
    assert webcam["rate_fps"] >= 8, webcam
    # Chromium's fake camera draws a moving picture: not blank, and changing.
    assert webcam["not_blank"] and webcam["moving"], webcam
    assert webcam["connected_to_first_frame_ms"] < 3000
    assert webcam["page"]["outbound"]["codec"] in ("video/VP8", "video/H264")


def test_closed_tab_is_reported_and_the_node_stays_up(scenario: dict) -> None:
    after = scenario["after_browser_closed"]
    assert after["state"] == "reconnecting" and after["node_alive"], after
    # The page closes its connection on pagehide: noticed at once, not after read_timeout_s.
    assert after["detected_after_s"] < 3.0, after
    assert "disconnected" in scenario["node_log_tail"]


def test_a_second_browser_is_received_and_its_frames_are_in_order(scenario: dict) -> None:
    coded = scenario["coded"]
    assert coded["frames"] >= 30 and coded["decoded"] == coded["frames"], coded
    assert coded["code_numbers_increasing"]
    assert scenario["final_info"]["reconnects"] == 1
    assert scenario["final_info"]["kind"] == "webrtc"
    latency = coded["canvas_to_subscriber_ms"]
    print(f"browser canvas -> ROS subscriber latency: {latency} ms")
    assert latency["median"] < 500, latency
    assert scenario["node_exit_code"] == 0 and not scenario["node_traceback"]
