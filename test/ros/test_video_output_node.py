"""video_output over real DDS: video_source (test pattern) -> video_output, real clients.

- RTSP (two PyAV clients at once) and MJPEG (a Python multipart client): latency from the
  frame's capture stamp (video_source's header stamp, looked up by the frame number the test
  pattern carries) to the client's decoded frame; one client leaves, the other keeps
  receiving; the node subscribes only while someone watches; diagnostics report the clients.
- A browser scenario in a loopback-only network namespace: the two nodes and headless Chromium
  together, two WebRTC viewers and the MJPEG page; one viewer leaves, the other keeps playing.
  Run as a script, this file is that scenario::

      python test/ros/test_video_output_node.py browser-scenario --domain-id 42
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_vision.testing.browser import WEBRTC_VIEWER_JS

pytestmark = pytest.mark.ros

WIDTH, HEIGHT, FPS = 640, 480, 30
URI = f"test://pattern?width={WIDTH}&height={HEIGHT}&fps={FPS}"
RESULT_MARK = "@@VIDEO_OUTPUT_NODE_SCENARIO@@ "


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until(condition: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout} s")
        time.sleep(0.05)


def quantiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 1),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
        "max": round(ordered[-1], 1),
        "n": len(ordered),
    }


class CaptureStamps:
    """Frame number -> capture stamp (ns) of what video_source publishes, from our own
    subscription to image_raw (the number is read from the test pattern's code strip)."""

    def __init__(self, node: Any, topic: str) -> None:
        from sensor_msgs.msg import Image

        from edge_vision.ros.qos import sensor_subscriber_qos

        self.stamps: dict[int, int] = {}
        self._lock = threading.Lock()
        self.subscription = node.create_subscription(
            Image, topic, self._on_image, sensor_subscriber_qos(10)
        )

    def _on_image(self, msg: Any) -> None:
        from edge_vision.ros.image_conversion import image_to_numpy, stamp_to_ns
        from edge_vision.sources.test_pattern import read_pattern_code

        # The code strip is black and white: one channel (a view, no copy) is enough.
        code = read_pattern_code(image_to_numpy(msg, "bgr8")[:, :, 1])
        if code is not None:
            with self._lock:
                self.stamps[code[0]] = stamp_to_ns(msg.header.stamp)

    def latency_ms(self, index: int, arrival_ns: int) -> float | None:
        with self._lock:
            stamp = self.stamps.get(index)
        return None if stamp is None else (arrival_ns - stamp) / 1e6


class Receiver:
    """A client thread that records (arrival ns, frame number) of every frame it decodes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.frames: list[tuple[int, int]] = []
        self.error = ""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._guarded, daemon=True)

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def _guarded(self) -> None:
        try:
            self.run()
        except Exception as exc:
            if not self.stop.is_set():
                self.error = f"{type(exc).__name__}: {exc}"

    def run(self) -> None:
        raise NotImplementedError

    def record(self, image: Any) -> None:
        from edge_vision.sources.test_pattern import read_pattern_code

        arrival = time.time_ns()
        code = read_pattern_code(image)
        if code is not None:
            self.frames.append((arrival, code[0]))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)

    def count(self) -> int:
        return len(self.frames)


class RtspReceiver(Receiver):
    def __init__(self, name: str, url: str) -> None:
        super().__init__(name)
        self.url = url

    def run(self) -> None:
        import av

        options = {"rtsp_transport": "tcp", "fflags": "nobuffer", "flags": "low_delay"}
        with av.open(self.url, options=options, timeout=(15.0, 5.0)) as container:
            for frame in container.decode(video=0):
                self.record(frame.to_ndarray(format="bgr24"))
                if self.stop.is_set():
                    return


class MjpegReceiver(Receiver):
    def __init__(self, name: str, url: str) -> None:
        super().__init__(name)
        self.url = url
        self.sock: socket.socket | None = None

    def run(self) -> None:
        import http.client
        from urllib.parse import urlsplit

        import cv2
        import numpy as np

        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        conn.request("GET", parts.path)
        response = conn.getresponse()
        self.sock = conn.sock
        assert response.status == 200, response.status
        content_type = response.getheader("Content-Type", "")
        assert content_type.startswith("multipart/x-mixed-replace"), content_type
        boundary = f"--{content_type.split('boundary=', 1)[1]}".encode()
        while not self.stop.is_set():
            line = response.readline()
            if not line:
                return
            if line.strip() != boundary:
                continue
            length = 0
            while (line := response.readline().strip()) != b"":
                key, _, value = line.decode().partition(":")
                if key.strip().lower() == "content-length":
                    length = int(value)
            data = response.read(length)
            self.record(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))

    def hang_up(self) -> None:
        """Drop the connection mid-stream, as a closed browser tab does."""
        self.stop.set()
        if self.sock is not None:
            self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(10)


def _rtsp_check() -> str | None:
    """None when the RTSP output can run here, else why not. Asked in a child process: loading
    GStreamer into this one would break rclpy participants created after it (see
    edge_vision/outputs/rtsp_server.py, _import_gst)."""
    import subprocess

    code = (
        "from edge_vision.outputs.rtsp_server import rtsp_unavailable_reason as r; print(r() or '')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or ["check failed"])[-1]
    return done.stdout.strip() or None


def _output_subscribed(ros: Any, topic: str) -> bool:
    return any(
        info.node_name == "video_output" for info in ros.node.get_subscriptions_info_by_topic(topic)
    )


def _latest_status(diag: Any, fqn: str) -> dict[str, str] | None:
    for msg in reversed(list(diag.messages)):
        for status in msg.status:
            if status.name == fqn:
                return {kv.key: kv.value for kv in status.values} | {"_message": status.message}
    return None


@pytest.mark.slow
def test_rtsp_and_mjpeg_clients_of_a_video_source_over_dds(ros, start_node) -> None:
    from diagnostic_msgs.msg import DiagnosticArray

    reason = _rtsp_check()
    if reason:
        pytest.fail(f"RTSP output not usable here ({reason}): run `make setup`")
    ns = "vout1"
    rtsp_port, http_port = free_port(), free_port()
    topic = f"/{ns}/image_raw"
    stamps = CaptureStamps(ros.node, topic)
    diag = ros.subscribe(DiagnosticArray, "/diagnostics")
    start_node("video_source", namespace=ns, parameters={"uri": URI})
    output = start_node(
        "video_output",
        namespace=ns,
        parameters={
            "rtsp_port": rtsp_port,
            "http_port": http_port,
            "rtsp_path": "/overlay",
            "webrtc": False,
            "mjpeg_max_fps": 15.0,
        },
        remappings={"image": "image_raw"},
    )
    try:
        assert output.wait_for_output("MJPEG: http://127.0.0.1:", 30), output.output()
        _wait_until(lambda: len(stamps.stamps) > 10, 30, "video_source frames")
        time.sleep(1.0)
        # Nobody watches: the node is not even subscribed (no deserialising, no encoding).
        assert not _output_subscribed(ros, topic)

        rtsp_url = f"rtsp://127.0.0.1:{rtsp_port}/overlay"
        mjpeg_url = f"http://127.0.0.1:{http_port}/stream.mjpg"
        first = RtspReceiver("rtsp-1", rtsp_url).start()
        second = RtspReceiver("rtsp-2", rtsp_url).start()
        mjpeg = MjpegReceiver("mjpeg", mjpeg_url).start()
        clients = (first, second, mjpeg)
        _wait_until(
            lambda: all(c.count() >= 60 for c in clients) or any(c.error for c in clients),
            60,
            "60 frames on each client",
        )
        for c in clients:
            assert not c.error, f"{c.name}: {c.error}\n{output.output()[-3000:]}"
        assert _output_subscribed(ros, topic)
        _wait_until(
            lambda: (_latest_status(diag, output.fqn) or {}).get("rtsp clients") == "2",
            10,
            "diagnostics with two RTSP clients",
        )
        status = _latest_status(diag, output.fqn)
        assert status is not None
        assert status["mjpeg clients"] == "1" and status["subscribed"] == "True"
        assert float(status["rtsp fps"]) > 10 and float(status["mjpeg fps"]) > 5
        assert status["rtsp encode ms"] != "-" and status["mjpeg encode ms"] != "-"
        assert status["rtsp url"] == rtsp_url

        # One RTSP client leaves and the MJPEG client hangs up: the other RTSP client goes on.
        first.close()
        mjpeg.hang_up()
        before = second.count()
        time.sleep(3.0)
        got = second.count() - before
        assert got >= 45, f"the remaining client got {got} frames in 3 s"
        assert not second.error

        # A setting changed at run time: MJPEG at most 5 fps for a new client.
        (ok,) = ros.set_parameters(output.fqn, {"mjpeg_max_fps": 5.0})
        assert ok.successful, ok.reason
        slow = MjpegReceiver("mjpeg-5fps", mjpeg_url).start()
        _wait_until(lambda: slow.count() >= 2, 15, "MJPEG at 5 fps")
        before = slow.count()
        time.sleep(3.0)
        slow_rate = (slow.count() - before) / 3.0
        slow.close()
        second.close()
        assert 3.0 <= slow_rate <= 6.5, slow_rate

        # Everyone left: the node unsubscribes (after a 2 s grace period).
        _wait_until(lambda: not _output_subscribed(ros, topic), 15, "unsubscribed")
        # The node logs it just after the graph shows it: wait for the line, not only the graph.
        assert output.wait_for_output("unsubscribed from /vout1/image_raw", timeout=10)
    finally:
        ros.node.destroy_subscription(stamps.subscription)
        diag.destroy()

    latencies = {
        c.name: quantiles(
            [v for a, i in c.frames if (v := stamps.latency_ms(i, a)) is not None][5:]
        )
        for c in clients
    }
    print(
        f"\nvideo_source ({WIDTH}x{HEIGHT}@{FPS}) -> video_output -> client, capture stamp to "
        f"decoded frame: {json.dumps(latencies)}; MJPEG capped at 5 fps: {slow_rate:.1f} fps"
    )
    for name, lat in latencies.items():
        assert lat is not None and lat["n"] >= 30, (name, lat)
    assert output.stop(signal.SIGINT) == 0


def test_a_taken_port_or_nothing_to_serve_is_a_clear_start_up_error(start_node) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = start_node(
            "video_output", parameters={"rtsp": False, "webrtc": False, "http_port": port}
        )
        assert node.wait(30) == 2
    assert f"cannot listen on http://127.0.0.1:{port}" in node.output()
    assert "Traceback" not in node.output()
    node = start_node("video_output", parameters={"rtsp": False, "mjpeg": False, "webrtc": False})
    assert node.wait(30) == 2
    assert "nothing to serve" in node.output()


# -- the browser scenario (loopback-only namespace) ---------------------------------------------

_BROWSER_JS = (
    WEBRTC_VIEWER_JS
    + r"""
const t0 = Date.now();
await page.waitForFunction(playing, null, { polling: 50 });
const firstPlayingMs = Date.now() - t0;
const second = await context.newPage();
await second.goto(args.webrtcUrl);
await second.waitForFunction(playing, null, { polling: 50 });
const mjpeg = await context.newPage();
await mjpeg.goto(args.pageUrl);
await mjpeg.waitForFunction(() => document.getElementById('stream').naturalWidth > 0,
                            null, { polling: 50 });
const img = await mjpeg.evaluate(() => {
  const el = document.getElementById('stream');
  return { naturalWidth: el.naturalWidth, naturalHeight: el.naturalHeight };
});
await page.bringToFront();
const both = [await viewerStats(page), await viewerStats(second)];
// Both viewers stay for 3 diagnostics periods (1 s), so the node's status shows 2 peers.
await page.waitForTimeout(3000);
await second.close();  // one viewer leaves
const before = await viewerStats(page);
await page.waitForTimeout(3000);
const after = await viewerStats(page);
return { firstPlayingMs, img, both, before, after };
"""
)


def _browser_scenario(domain_id: int, log_dir: Path | None) -> dict[str, Any]:
    """In the namespace: video_source -> video_output, Chromium with two WebRTC viewers and the
    MJPEG page; diagnostics followed from here."""
    from diagnostic_msgs.msg import DiagnosticArray

    from edge_vision.testing.browser import run_browser_script
    from edge_vision.testing.ros_harness import NodeProcess, RosClient, isolate_ros_environment

    isolate_ros_environment(domain_id)
    result: dict[str, Any] = {"interfaces": [name for _, name in socket.if_nameindex()]}
    http_port = free_port()
    source = NodeProcess(
        "video_source", namespace="/vout2", parameters={"uri": URI}, log_dir=log_dir
    )
    output = NodeProcess(
        "video_output",
        namespace="/vout2",
        parameters={"rtsp": False, "http_port": http_port},
        remappings={"image": "image_raw"},
        log_dir=log_dir,
    )
    ros = RosClient("video_output_scenario")
    diag = ros.subscribe(DiagnosticArray, "/diagnostics")
    peers: list[tuple[float, str]] = []
    stop = threading.Event()

    def follow() -> None:
        while not stop.wait(0.2):
            status = _latest_status(diag, output.fqn)
            if status is not None:
                peers.append((time.monotonic(), status.get("webrtc connected", "")))

    try:
        if not output.wait_for_output("WebRTC: http://", 30):
            raise RuntimeError(f"video_output did not start:\n{output.output()[-3000:]}")
        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        page = run_browser_script(
            _BROWSER_JS,
            url=f"http://127.0.0.1:{http_port}/webrtc",
            timeout_s=120,
            fake_camera=True,  # its permission makes Chromium offer 127.0.0.1 candidates
            extra_flags=["--autoplay-policy=no-user-gesture-required"],
            args={
                "webrtcUrl": f"http://127.0.0.1:{http_port}/webrtc",
                "pageUrl": f"http://127.0.0.1:{http_port}/",
            },
        )
        result.update(page["value"])
        result["page_errors"] = page["page_errors"]
        time.sleep(1.5)
        stop.set()
        follower.join(5)
        result["webrtc_connected_seen"] = sorted({v for _, v in peers})
        result["final_status"] = _latest_status(diag, output.fqn)
        result["output_exit"] = output.stop(signal.SIGINT)
    finally:
        stop.set()
        diag.destroy()
        ros.close()
        source.stop()
        if output.alive():
            output.stop()
        result["output_log"] = output.output()[-4000:]
    return result


@pytest.mark.slow
def test_browser_plays_webrtc_and_mjpeg_from_the_node_in_a_loopback_only_namespace(tmp_path):
    from edge_vision.testing.browser import browser_unavailable_reason, run_in_loopback_namespace

    reason = browser_unavailable_reason(namespace=True)
    if reason:
        pytest.skip(f"browser scenario not possible here: {reason}")
    domain_id = 1 + (int(os.environ.get("ROS_DOMAIN_ID", "0")) + 30) % 100
    done = run_in_loopback_namespace(
        [
            sys.executable,
            os.path.abspath(__file__),
            "browser-scenario",
            "--domain-id",
            str(domain_id),
            "--log-dir",
            str(tmp_path),
        ],
        timeout_s=200,
    )
    result = None
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK) :])
            break
    assert result is not None, f"no result (exit {done.returncode}):\n{done.stderr[-4000:]}"
    log = result.pop("output_log", "")
    print(json.dumps(result, indent=1))
    assert "error" not in result, f"{result.get('traceback')}\nnode log:\n{log}"
    assert result["interfaces"] == ["lo"]
    assert result["img"] == {"naturalWidth": WIDTH, "naturalHeight": HEIGHT}
    for state in result["both"]:
        assert (state["videoWidth"], state["videoHeight"]) == (WIDTH, HEIGHT), state
        assert state["codec"] == "video/H264" and state["state"] == "connected", state
        assert state["local"]["address"] == state["remote"]["address"] == "127.0.0.1", state
    assert "2" in result["webrtc_connected_seen"], result["webrtc_connected_seen"]
    before, after = result["before"], result["after"]
    assert after["currentTime"] - before["currentTime"] > 2.0, (before, after)
    assert after["framesDecoded"] - before["framesDecoded"] >= 40, (before, after)
    assert result["output_exit"] == 0, log
    assert "Traceback" not in log, log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["browser-scenario"])
    parser.add_argument("--domain-id", type=int, default=42)
    parser.add_argument("--log-dir", default=None)
    args = parser.parse_args(argv)
    try:
        result = _browser_scenario(args.domain_id, Path(args.log_dir) if args.log_dir else None)
    except Exception as exc:
        import traceback

        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    print(RESULT_MARK + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
