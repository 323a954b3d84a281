"""A real browser sends its camera to video_source over WebRTC; frames arrive on ``image_raw``.

Run it inside a loopback-only network namespace (see ``edge_vision.testing.browser``)::

    python -c 'from edge_vision.testing.browser import run_in_loopback_namespace as r; \
        import sys; print(r([sys.executable, "-m", "edge_vision.testing.webrtc_scenario"]).stdout)'

Everything lives in that namespace: the ``video_source`` node process (``uri:
webrtc://127.0.0.1:PORT``), a ``RosClient`` subscriber in this process, and headless Chromium.
Two browser sessions, one after the other:

1. ``webcam``: Chromium's fake webcam (``--use-fake-device-for-media-stream``, a moving
   synthetic picture) through the source's own page, held for ``--hold-s`` seconds. Then the
   browser closes, and the node must report the sender gone (``~/get_info`` state
   ``reconnecting``) while staying up.
2. ``coded`` (a new sender: a reconnect): the same page, but ``getUserMedia`` is replaced
   (before the page loads) by a canvas stream that paints the test pattern's code strip
   (``edge_vision.sources.test_pattern``: frame number and ``Date.now()`` in ms) a few times
   per frame interval, so that each frame on the topic says when the browser drew it: latency
   from canvas paint to the ROS subscriber, on one clock. It includes up to one frame interval
   of waiting for the canvas capture, then VP8 encode, loopback, decode, publish and DDS.

The last line of stdout is ``@@EDGE_VISION_SCENARIO@@ {json}`` with ``ok``, the interfaces
seen, and per phase: frames received, size, rate, blank/motion checks, page-side WebRTC stats
(codec, encoder, ICE candidate pair) and (coded) latencies; test/ros/test_webrtc_browser.py
asserts on it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import statistics
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

RESULT_MARK = "@@EDGE_VISION_SCENARIO@@ "

# Page-side: wait for the page's sender to connect, hold, and report WebRTC statistics.
_HOLD_JS = r"""
const t0 = Date.now();
const ended = ['connected', 'error', 'failed', 'closed'];
await page.waitForFunction((ended) => window.edgeVision && ended.includes(window.edgeVision.state),
                           ended, { polling: 20 });
const connectedAt = Date.now();
const st = await page.evaluate(() => ({ state: edgeVision.state, error: edgeVision.error }));
if (st.state !== 'connected') throw new Error('page state ' + st.state + ': ' + st.error);
await page.waitForTimeout(args.holdMs);
const report = await page.evaluate(async () => {
  const ev = window.edgeVision;
  const stats = await ev.pc.getStats();
  const out = { outbound: null, pair: null, local: null, remote: null };
  const byId = {};
  stats.forEach((s) => { byId[s.id] = s; });
  stats.forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') out.outbound = {
      framesEncoded: s.framesEncoded, framesSent: s.framesSent, frameWidth: s.frameWidth,
      frameHeight: s.frameHeight, framesPerSecond: s.framesPerSecond,
      bytesSent: s.bytesSent, encoderImplementation: s.encoderImplementation,
      codec: s.codecId && byId[s.codecId] ? byId[s.codecId].mimeType : null };
    if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
      out.pair = { rtt: s.currentRoundTripTime };
      const l = byId[s.localCandidateId], r = byId[s.remoteCandidateId];
      const brief = (c) => c && { address: c.address, port: c.port, type: c.candidateType,
                                  protocol: c.protocol };
      out.local = brief(l);
      out.remote = brief(r);
    }
  });
  const track = ev.stream.getVideoTracks()[0];
  out.settings = track.getSettings();
  out.label = track.label;
  return out;
});
// Close the tab as a user would (the page closes its connection on pagehide).
await page.close();
const closedAtMs = Date.now();
return { pageLoadedToConnectedMs: connectedAt - t0, connectedAtMs: connectedAt, closedAtMs,
         ...report };
"""

# Replaces getUserMedia (before the page's script runs) by a canvas that carries the code strip.
_CODED_CAMERA_JS = (
    r"""
await page.addInitScript(({ width, height, fps }) => {
  const CODE_BITS = 32;
  navigator.mediaDevices.getUserMedia = async () => {
    const canvas = document.createElement('canvas');
    canvas.width = width; canvas.height = height;
    const g = canvas.getContext('2d');
    const blockW = Math.floor(width / CODE_BITS);
    const blockH = Math.max(4, Math.min(16, Math.floor(height / 16)));
    const top = height - 2 * blockH;
    let n = 0;
    function row(value, y) {
      for (let bit = 0; bit < CODE_BITS; bit++) {
        const on = Math.floor(value / 2 ** (CODE_BITS - 1 - bit)) % 2;
        g.fillStyle = on ? '#fff' : '#000';
        g.fillRect(bit * blockW, y, blockW, blockH);
      }
    }
    function draw() {
      g.fillStyle = '#808080'; g.fillRect(0, 0, width, height);
      g.fillStyle = '#ffc840';
      const side = Math.floor(Math.min(width, height) / 6);
      g.fillRect((n * 8) % (width - side), (n * 6) % (top - side), side, side);
      row(n % 2 ** 32, top);
      row(Date.now() % 2 ** 32, top + blockH);
      n++;
    }
    draw();
    setInterval(draw, 1000 / fps / 4);
    return canvas.captureStream(fps);
  };
}, args);
await page.goto(args.url);
"""
    + _HOLD_JS
)


class FrameLog:
    """What arrived on the topic: per message (arrival ns, header stamp ns, w, h, code) and a
    few sample images."""

    def __init__(self, decode: bool) -> None:
        self.decode = decode
        self.records: list[tuple[int, int, int, int, tuple[int, int] | None]] = []
        self.samples: list[np.ndarray] = []
        self.lock = threading.Lock()

    def add(self, msg: Any) -> None:
        from edge_vision.ros.image_conversion import image_to_numpy, stamp_to_ns
        from edge_vision.sources.test_pattern import read_pattern_code

        arrival = time.time_ns()
        image = image_to_numpy(msg, "bgr8")
        code = read_pattern_code(image) if self.decode else None
        with self.lock:
            self.records.append(
                (arrival, stamp_to_ns(msg.header.stamp), msg.width, msg.height, code)
            )
            if len(self.records) % 5 == 1 and len(self.samples) < 40:
                self.samples.append(image.copy())

    def summary(self) -> dict[str, Any]:
        with self.lock:
            records, samples = list(self.records), list(self.samples)
        out: dict[str, Any] = {"frames": len(records)}
        if not records:
            return out
        arrivals = [r[0] for r in records]
        span = (arrivals[-1] - arrivals[0]) / 1e9
        out["sizes"] = sorted({f"{r[2]}x{r[3]}" for r in records})
        out["rate_fps"] = round((len(records) - 1) / span, 2) if span > 0 else 0.0
        out["first_arrival_ms"] = arrivals[0] // 1_000_000
        # Publish-to-subscriber (the header stamp is the source's arrival stamp).
        out["stamp_to_subscriber_ms"] = _quantiles([(r[0] - r[1]) / 1e6 for r in records])
        stds = [float(s.std()) for s in samples]
        out["sample_std"] = [round(v, 1) for v in stds]
        out["not_blank"] = bool(stds) and min(stds) > 5.0
        if len(samples) >= 2:
            diffs = [
                float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
                for a, b in itertools.pairwise(samples)
            ]
            out["sample_mean_abs_diff"] = [round(v, 2) for v in diffs]
            out["moving"] = max(diffs) > 1.0
        if self.decode:
            codes = [(r[0], r[1], r[4]) for r in records if r[4] is not None]
            out["decoded"] = len(codes)
            mod = 1 << 32
            # Code strip: (frame number, Date.now() ms mod 2**32 when the canvas was drawn).
            out["canvas_to_subscriber_ms"] = _quantiles(
                [((a // 1_000_000 - c[1]) % mod) for a, _, c in codes if c is not None]
            )
            out["canvas_to_source_ms"] = _quantiles(
                [((s // 1_000_000 - c[1]) % mod) for _, s, c in codes if c is not None]
            )
            numbers = [c[0] for _, _, c in codes if c is not None]
            out["code_numbers_increasing"] = numbers == sorted(numbers)
        return out


def _quantiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 1),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
        "max": round(ordered[-1], 1),
        "min": round(ordered[0], 1),
    }


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux), or None."""
    import os

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_port(port: int, node: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not node.alive():
            raise RuntimeError(f"video_source exited:\n{node.output()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"video_source did not listen on 127.0.0.1:{port} in {timeout} s")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from sensor_msgs.msg import Image

    from edge_vision.ros.qos import sensor_subscriber_qos
    from edge_vision.srv import GetSourceInfo
    from edge_vision.testing.browser import run_browser_script
    from edge_vision.testing.ros_harness import NodeProcess, RosClient
    from edge_vision.testing.rtsp_server import find_free_port

    result: dict[str, Any] = {"interfaces": [name for _, name in socket.if_nameindex()]}
    port = find_free_port()
    uri = f"webrtc://127.0.0.1:{port}?width={args.width}&height={args.height}&fps={args.fps:g}"
    page_url = f"http://127.0.0.1:{port}/"
    result["uri"] = uri
    log_dir = Path(args.log_dir) if args.log_dir else None
    node = NodeProcess(
        "video_source",
        namespace="/webcam",
        parameters={"uri": uri, "frame_id": "browser"},
        log_dir=log_dir,
    )
    ros = RosClient("webrtc_scenario")
    current: list[FrameLog] = [FrameLog(decode=False)]
    ros.node.create_subscription(
        Image, "/webcam/image_raw", lambda msg: current[0].add(msg), sensor_subscriber_qos(10)
    )
    try:
        _wait_port(port, node, 30.0)
        if not ros.wait_for_publisher("/webcam/image_raw", 15.0):
            raise TimeoutError("no publisher on /webcam/image_raw")
        info = ros.call(GetSourceInfo, "/webcam/video_source/get_info")
        result["state_before_browser"] = info.state

        # 1. Chromium's fake webcam through the source's page.
        webcam = FrameLog(decode=False)
        current[0] = webcam
        page = run_browser_script(
            _HOLD_JS,
            url=page_url,
            fake_camera=True,
            args={"holdMs": int(args.hold_s * 1000)},
            timeout_s=args.hold_s + 45,
        )
        browser_gone = time.monotonic()
        result["webcam"] = {"page": page["value"], **webcam.summary()}
        result["webcam"]["connected_to_first_frame_ms"] = (
            result["webcam"].get("first_arrival_ms", 0) - page["value"]["connectedAtMs"]
            if webcam.records
            else None
        )
        result["webcam"]["page_console"] = page["console"][-20:]

        # The browser is gone: the node reports it and stays up.
        state = ""
        deadline = browser_gone + 15.0
        while time.monotonic() < deadline:
            info = ros.call(GetSourceInfo, "/webcam/video_source/get_info")
            state = info.state
            if state == "reconnecting":
                break
            time.sleep(0.1)
        result["after_browser_closed"] = {
            "state": state,
            "detected_after_s": round(time.monotonic() - browser_gone, 2),
            "node_alive": node.alive(),
        }

        # 2. A new sender (a reconnect) with a coded canvas: latency.
        coded = FrameLog(decode=True)
        current[0] = coded
        cpu_before = _cpu_seconds(node.pid)
        page = run_browser_script(
            _CODED_CAMERA_JS,
            url=None,
            fake_camera=True,
            args={
                "url": page_url,
                "width": args.width,
                "height": args.height,
                "fps": args.fps,
                "holdMs": int(args.hold_s * 1000),
            },
            timeout_s=args.hold_s + 45,
        )
        cpu_after = _cpu_seconds(node.pid)
        result["coded"] = {"page": page["value"], **coded.summary()}
        if cpu_before is not None and cpu_after is not None:
            # Includes the seconds of Chromium start-up, when the node is idle.
            busy_s = (page["value"]["closedAtMs"] - page["value"]["connectedAtMs"]) / 1000
            result["coded"]["node_cpu_percent_while_connected_upper_bound"] = round(
                100 * (cpu_after - cpu_before) / max(busy_s, 0.1), 1
            )
        info = ros.call(GetSourceInfo, "/webcam/video_source/get_info")
        result["final_info"] = {
            "kind": info.kind,
            "state": info.state,
            "reconnects": info.reconnects,
            "frames_published": info.frames_published,
            "frames_dropped": info.frames_dropped,
            "width": info.width,
            "height": info.height,
            "last_error": info.last_error,
        }
    finally:
        current[0] = FrameLog(decode=False)
        exit_code = node.stop(timeout=10)
        ros.close()
        output = node.output()
        result["node_exit_code"] = exit_code
        result["node_traceback"] = "Traceback" in output
        result["node_log_tail"] = output[-4000:]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domain-id", type=int, default=None)
    parser.add_argument("--hold-s", type=float, default=5.0, help="seconds per browser session")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--log-dir", default=None)
    args = parser.parse_args(argv)

    from edge_vision.testing.ros_harness import isolate_ros_environment

    isolate_ros_environment(args.domain_id)
    result: dict[str, Any] = {"ok": False}
    try:
        result.update(run(args))
        result["ok"] = True
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
    print("\n" + RESULT_MARK + json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


def parse_result(stdout: str) -> dict[str, Any] | None:
    """The scenario's JSON result from its stdout, or None."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    return None


if __name__ == "__main__":
    sys.exit(main())
