#!/usr/bin/env python3
"""video_output: CPU of the node and latency per output and number of clients.

A camera process (test-pattern frames at WxH@30 that carry the wall-clock ms they were made
at) -> ``video_output`` (default parameters: RTSP at up to 30 fps, MJPEG at up to 15 fps,
WebRTC H.264 at up to 30 fps) as separate processes over DDS on loopback, and real clients in
this process that decode every frame: PyAV for RTSP (TCP), a multipart parser + OpenCV JPEG
decode for MJPEG, aiortc for WebRTC (H.264, ICE on 127.0.0.1). For each scenario (which
clients, how many), after a warm-up: the video_output process's CPU (user + system, % of one
core), the frames each client decoded per second, and the latency from when the frame was
made (read from the frame itself) to the client's decoded frame, on one clock. For context,
also the CPU of the camera process and of the clients (this process).

    python bench/video_output.py                          # 640x480 and 1920x1080
    python bench/video_output.py --sizes 640x480 --seconds 5 --json out/video_output.json

The clients decode in this process, on the same cores as the nodes (2 on the build machines):
at 1080p with several clients the machine is saturated and latencies include waiting for CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_header, print_table

from edge_vision.testing.ros_harness import (
    NodeProcess,
    isolate_ros_environment,
)

SCENARIOS: list[tuple[str, dict[str, int]]] = [
    ("idle (nobody watching)", {}),
    ("RTSP x1", {"rtsp": 1}),
    ("RTSP x3", {"rtsp": 3}),
    ("MJPEG x1", {"mjpeg": 1}),
    ("MJPEG x3", {"mjpeg": 3}),
    ("WebRTC x1", {"webrtc": 1}),
    ("WebRTC x3", {"webrtc": 3}),
    ("RTSP + MJPEG + WebRTC", {"rtsp": 1, "mjpeg": 1, "webrtc": 1}),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _feeder_main(topic: str, width: int, height: int, fps: int, stop: Any) -> None:
    """In a process of its own: publish test-pattern frames that carry the wall-clock ms they
    were made at (``render_pattern(stamp_ms=...)``), stamped with the same time, at ``fps``."""
    import rclpy
    from rclpy.context import Context

    from edge_vision.ros.image_conversion import numpy_to_image
    from edge_vision.ros.qos import image_publisher_qos
    from edge_vision.sources.test_pattern import render_pattern

    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("bench_camera", context=context)
    from sensor_msgs.msg import Image

    pub = node.create_publisher(Image, topic, image_publisher_qos())
    index = 0
    next_t = time.monotonic()
    try:
        while not stop.is_set():
            now_ns = time.time_ns()
            image = render_pattern(index, width, height, stamp_ms=now_ns // 1_000_000)
            pub.publish(numpy_to_image(image, "bgr8", frame_id="camera", stamp=now_ns))
            index += 1
            next_t = max(next_t + 1.0 / fps, time.monotonic())
            stop.wait(max(0.0, next_t - time.monotonic()))
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)


class Client:
    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url
        self.latencies_ms: list[int] = []  # arrival minus the stamp the frame carries
        self.error = ""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._guarded, daemon=True)

    def start(self) -> Client:
        self.thread.start()
        return self

    def _guarded(self) -> None:
        try:
            {"rtsp": self._rtsp, "mjpeg": self._mjpeg, "webrtc": self._webrtc}[self.kind]()
        except Exception as exc:
            if not self.stop.is_set():
                self.error = f"{type(exc).__name__}: {exc}"

    def record(self, image: Any) -> None:
        from edge_vision.sources.test_pattern import read_pattern_code

        arrival_ms = time.time_ns() // 1_000_000
        code = read_pattern_code(image)
        if code is not None:
            self.latencies_ms.append((arrival_ms - code[1]) % 2**32)

    def _rtsp(self) -> None:
        import av

        options = {"rtsp_transport": "tcp", "fflags": "nobuffer", "flags": "low_delay"}
        with av.open(self.url, options=options, timeout=(15.0, 5.0)) as container:
            for frame in container.decode(video=0):
                self.record(frame.to_ndarray(format="gray"))  # the code strip is grey
                if self.stop.is_set():
                    return

    def _mjpeg(self) -> None:
        import http.client
        from urllib.parse import urlsplit

        import cv2
        import numpy as np

        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        conn.request("GET", parts.path)
        response = conn.getresponse()
        boundary = b"--" + response.getheader("Content-Type").split("boundary=")[1].encode()
        while not self.stop.is_set():
            line = response.readline()
            if not line:
                return
            if line.strip() != boundary:
                continue
            length = 0
            while (line := response.readline().strip()) != b"":
                key, _, value = line.decode().partition(":")
                if key.lower() == "content-length":
                    length = int(value)
            data = response.read(length)
            self.record(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE))
        conn.close()

    def _webrtc(self) -> None:
        asyncio.run(self._webrtc_async())

    async def _webrtc_async(self) -> None:
        import aiohttp
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        from edge_vision.core.ice import ice_host_candidates

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", direction="recvonly")
        got_track: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pc.on("track", lambda track: got_track.done() or got_track.set_result(track))
        try:
            with ice_host_candidates(("127.0.0.1",)):
                await pc.setLocalDescription(await pc.createOffer())
                offer = {"sdp": pc.localDescription.sdp, "type": "offer"}
                async with (
                    aiohttp.ClientSession() as session,
                    session.post(self.url, json=offer) as response,
                ):
                    response.raise_for_status()
                    answer = await response.json()
                await pc.setRemoteDescription(RTCSessionDescription(**answer))
            track = await asyncio.wait_for(got_track, 15)
            while not self.stop.is_set():
                frame = await asyncio.wait_for(track.recv(), 5)
                self.record(frame.to_ndarray(format="gray"))
        finally:
            await pc.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def quantiles(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{statistics.median(ordered):.0f} / {ordered[int(0.9 * (len(ordered) - 1))]:.0f}"


def run_size(
    width: int, height: int, fps: int, warmup: float, seconds: float
) -> list[dict[str, Any]]:
    ns = f"bench_{width}x{height}"
    rtsp_port, http_port = free_port(), free_port()
    ctx = multiprocessing.get_context("spawn")
    stop_feeder = ctx.Event()
    source = ctx.Process(
        target=_feeder_main,
        args=(f"/{ns}/image_raw", width, height, fps, stop_feeder),
        daemon=True,
    )
    source.start()
    output = NodeProcess(
        "video_output",
        namespace=ns,
        parameters={"rtsp_port": rtsp_port, "http_port": http_port},
        remappings={"image": "image_raw"},
    )
    urls = {
        "rtsp": f"rtsp://127.0.0.1:{rtsp_port}/stream",
        "mjpeg": f"http://127.0.0.1:{http_port}/stream.mjpg",
        "webrtc": f"http://127.0.0.1:{http_port}/offer",
    }
    rows: list[dict[str, Any]] = []
    try:
        if not output.wait_for_output("WebRTC: http://", 60):
            raise RuntimeError(f"video_output did not start:\n{output.output()[-3000:]}")
        time.sleep(2.0)
        for name, wanted in SCENARIOS:
            clients = [Client(k, urls[k]).start() for k, n in wanted.items() for _ in range(n)]
            time.sleep(warmup)
            for c in clients:
                c.latencies_ms.clear()
            cpu0, src0, own0 = cpu_seconds(output.pid), cpu_seconds(source.pid), _own_cpu()
            t0 = time.monotonic()
            time.sleep(seconds)
            cpu1, src1, own1 = cpu_seconds(output.pid), cpu_seconds(source.pid), _own_cpu()
            t1 = time.monotonic()
            for c in clients:
                c.close()
            row: dict[str, Any] = {
                "size": f"{width}x{height}",
                "scenario": name,
                "cpu_percent": 100.0 * (cpu1 - cpu0) / (t1 - t0),
                "source_cpu_percent": 100.0 * (src1 - src0) / (t1 - t0),
                "clients_cpu_percent": 100.0 * (own1 - own0) / (t1 - t0),
                "clients": {},
            }
            for kind in wanted:
                mine = [c for c in clients if c.kind == kind]
                # A code misread in a lossy frame gives an absurd value: leave those out.
                lat = [v for c in mine for v in c.latencies_ms if v < 60_000]
                row["clients"][kind] = {
                    "fps_per_client": statistics.mean(len(c.latencies_ms) for c in mine)
                    / (t1 - t0),
                    "latency_median_p90_ms": quantiles(lat),
                    "errors": [c.error for c in mine if c.error],
                }
            rows.append(row)
            print(f"  {width}x{height} {name}: {json.dumps(row)}", flush=True)
            time.sleep(3.0)  # the node unsubscribes 2 s after the last client left
    finally:
        output.stop()
        stop_feeder.set()
        source.join(10)
        if source.is_alive():
            source.kill()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="640x480,1920x1080")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    isolate_ros_environment()
    print_header()
    results: list[dict[str, Any]] = []
    for size in args.sizes.split(","):
        width, height = (int(v) for v in size.split("x"))
        results += run_size(width, height, args.fps, args.warmup, args.seconds)
    table = []
    for r in results:
        cells = []
        for kind, c in r["clients"].items():
            err = f" ({len(c['errors'])} errors)" if c["errors"] else ""
            cells.append(
                f"{kind} {c['fps_per_client']:.1f} fps, {c['latency_median_p90_ms']} ms{err}"
            )
        table.append(
            [
                r["size"],
                r["scenario"],
                f"{r['cpu_percent']:.0f} %",
                f"{r['source_cpu_percent']:.0f} % / {r['clients_cpu_percent']:.0f} %",
                "; ".join(cells),
            ]
        )
    print()
    print_table(
        [
            "size",
            "clients",
            "video_output CPU",
            "camera / clients CPU",
            "per client: fps, latency capture -> decoded (median / p90)",
        ],
        table,
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
