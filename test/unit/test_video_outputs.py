"""The video outputs without ROS: a FrameHub fed with test-pattern frames that carry their
wall-clock ms, served over RTSP (read back by PyAV and OpenCV at once, latency measured), MJPEG
(parsed by Python clients and rendered by headless Chromium) and WebRTC (played by headless
Chromium in a loopback-only network namespace, latency read from the displayed frames).

Run as a script, this file is the WebRTC browser scenario itself (the test starts it inside
the namespace, so the server, its ICE sockets and Chromium share a network with only ``lo``)
and the RTSP server child (GStreamer stays out of the pytest process, see ``RtspChild``)::

    python test/unit/test_video_outputs.py webrtc-scenario --codec h264
    python test/unit/test_video_outputs.py rtsp-serve --port 8554 --feed
"""

from __future__ import annotations

import argparse
import base64
import http.client
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest

from edge_vision.outputs.frame_hub import FrameHub, Pacer
from edge_vision.sources.test_pattern import read_pattern_code, render_pattern
from edge_vision.testing.browser import WEBRTC_VIEWER_JS

WIDTH, HEIGHT, FPS = 640, 480, 30
RESULT_MARK = "@@VIDEO_OUTPUT_SCENARIO@@ "


def now_ms32() -> int:
    return (time.time_ns() // 1_000_000) % 2**32


def latency_ms(stamp_ms: int, arrival_ms32: int | None = None) -> int:
    """Arrival minus the frame's stamp, both modulo 2**32 (what the code strip carries)."""
    return ((now_ms32() if arrival_ms32 is None else arrival_ms32) - stamp_ms) % 2**32


def quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": float(statistics.median(ordered)),
        "p90": float(ordered[int(0.9 * (len(ordered) - 1))]),
        "max": float(ordered[-1]),
        "n": len(ordered),
    }


class PatternFeeder:
    """Puts ``render_pattern`` frames (index + wall-clock ms) into a hub at ``fps``, like a
    camera: the frame is stamped when it is made."""

    def __init__(self, hub: FrameHub, fps: float = FPS, size: tuple[int, int] = (WIDTH, HEIGHT)):
        self.hub = hub
        self.fps = fps
        self.size = size
        self.index = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            now_ns = time.time_ns()
            image = render_pattern(self.index, *self.size, stamp_ms=now_ns // 1_000_000)
            self.hub.put(image, now_ns)
            self.index += 1
            next_t = max(next_t + 1.0 / self.fps, time.monotonic())
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def __enter__(self) -> PatternFeeder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


# -- FrameHub -------------------------------------------------------------------------------------


def test_hub_gives_every_consumer_the_newest_frame_and_counts_viewers() -> None:
    hub = FrameHub()
    assert hub.latest() is None and hub.wait_newer(0, timeout=0.01) is None
    for i in range(3):
        hub.put(np.full((4, 4, 3), i, np.uint8), stamp_ns=i)
    first = hub.wait_newer(0, timeout=0.01)
    assert first is not None and first.seq == 3 and first.stamp_ns == 2  # newest, no backlog
    assert not first.image.flags.writeable  # shared by every consumer
    assert hub.newer_than(3) is None and hub.newer_than(2) is first
    assert hub.replaced == 2  # two frames nobody took

    # A waiting consumer wakes on the next put; another one is not affected.
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(hub.wait_newer(3, timeout=5).seq))
    waiter.start()
    time.sleep(0.05)
    hub.put(np.zeros((4, 4, 3), np.uint8), stamp_ns=9)
    waiter.join(5)
    assert got == [4]

    hub.acquire("rtsp")
    hub.acquire("mjpeg")
    hub.acquire("mjpeg")
    assert hub.viewers() == 3 and hub.viewers("mjpeg") == 2
    hub.release("mjpeg")
    hub.release("rtsp")
    hub.release("rtsp")  # never below zero
    assert hub.viewers() == 1 and hub.viewers("rtsp") == 0
    hub.clear()
    assert hub.latest() is None and hub.newer_than(0) is None


def test_pacer_caps_the_rate_without_bursts() -> None:
    pacer = Pacer(10.0)
    t = 100.0
    assert pacer.delay(t) == 0.0
    pacer.sent(t)
    assert pacer.delay(t + 0.05) == pytest.approx(0.05)
    pacer.sent(t + 0.12)  # a little late: the next one is still due on the grid
    assert pacer.delay(t + 0.12) == pytest.approx(0.08)
    pacer.sent(t + 1.2)  # a stall: no catch-up burst, at least half an interval apart
    assert pacer.delay(t + 1.2) == pytest.approx(0.05)
    assert Pacer(0).delay(t) == 0.0


# -- RTSP -----------------------------------------------------------------------------------------


@dataclass
class ClientLog:
    """Frames one client decoded: (arrival wall ms mod 2**32, index, stamp_ms)."""

    name: str
    frames: list[tuple[int, int, int]] = field(default_factory=list)
    error: str = ""
    first_frame_s: float | None = None

    def latencies(self) -> list[int]:
        return [(arrival - stamp) % 2**32 for arrival, _, stamp in self.frames]

    def indices(self) -> list[int]:
        return [index for _, index, _ in self.frames]


def read_rtsp_pyav(url: str, log: ClientLog, stop: threading.Event, max_s: float = 30.0) -> None:
    import av

    started = time.monotonic()
    try:
        # Low-delay options, TCP interleaved.
        options = {"rtsp_transport": "tcp", "fflags": "nobuffer", "flags": "low_delay"}
        with av.open(url, options=options, timeout=(10.0, 5.0)) as container:
            for frame in container.decode(video=0):
                image = frame.to_ndarray(format="bgr24")
                arrival = now_ms32()
                if log.first_frame_s is None:
                    log.first_frame_s = time.monotonic() - started
                code = read_pattern_code(image)
                if code is not None:
                    log.frames.append((arrival, code[0], code[1]))
                if stop.is_set() or time.monotonic() - started > max_s:
                    return
    except Exception as exc:
        log.error = f"{type(exc).__name__}: {exc}"


def read_rtsp_opencv(url: str, log: ClientLog, stop: threading.Event, max_s: float = 30.0) -> None:
    started = time.monotonic()
    capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG)  # FFmpeg's default transport: UDP
    try:
        if not capture.isOpened():
            log.error = "OpenCV could not open the stream"
            return
        capture.set(cv2.CAP_PROP_N_THREADS, 1)
        while not stop.is_set() and time.monotonic() - started < max_s:
            ok, image = capture.read()
            if not ok:
                log.error = "OpenCV read failed"
                return
            arrival = now_ms32()
            if log.first_frame_s is None:
                log.first_frame_s = time.monotonic() - started
            code = read_pattern_code(image)
            if code is not None:
                log.frames.append((arrival, code[0], code[1]))
    finally:
        capture.release()


def _wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout} s")
        time.sleep(0.05)


def rtsp_check() -> str | None:
    """None when the RTSP output can run here, else why not; asked in a child process (see
    RtspChild: GStreamer must not be loaded into the test process)."""
    code = (
        "from edge_vision.outputs.rtsp_server import rtsp_unavailable_reason as r; print(r() or '')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or ["check failed"])[-1]
    return done.stdout.strip() or None


@pytest.fixture(scope="module")
def rtsp_available() -> None:
    reason = rtsp_check()
    if reason is not None:
        pytest.fail(f"RTSP output not usable here ({reason}): run `make setup`")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RtspChild:
    """An RtspOutput fed with pattern frames, in a child process (this file run as a script:
    ``rtsp-serve``); its stats come back as JSON lines every 0.1 s.

    Why a child: GStreamer (through gi) puts libunwind's ``_Unwind_Resume`` in the process's
    global symbol scope; an rclpy participant created afterwards in the same process crashes on
    the first C++ exception Fast DDS throws and catches (measured: SIGSEGV/abort when binding
    its UDP ports), and later tests in this pytest process create participants. The node
    itself loads GStreamer only after its participant exists, which is safe.
    """

    def __init__(
        self, *, feed: bool = True, size: tuple[int, int] = (WIDTH, HEIGHT), max_fps: float = 30
    ) -> None:
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "rtsp-serve",
            f"--port={self.port}",
            f"--size={size[0]}x{size[1]}",
            f"--max-fps={max_fps}",
        ]
        if feed:
            command.append("--feed")
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.stats: dict[str, Any] = {}
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(30):
            self.close()
            raise RuntimeError("the RTSP server child did not start")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(RESULT_MARK):
                self.stats = json.loads(line[len(RESULT_MARK) :])
                self._ready.set()

    def feed(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("feed\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write("stop\n")
                self.process.stdin.flush()
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> RtspChild:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rtsp_serve(args: argparse.Namespace) -> int:
    """The child of RtspChild."""
    from edge_vision.outputs.rtsp_server import RtspOutput, RtspSettings

    hub = FrameHub()
    output = RtspOutput(
        hub, port=args.port, path="/cam", settings=RtspSettings(max_fps=args.max_fps)
    )
    output.start()
    width, height = (int(v) for v in args.size.split("x"))
    feeder = PatternFeeder(hub, size=(width, height))
    commands: list[str] = ["feed"] if args.feed else []

    def listen() -> None:
        for line in sys.stdin:
            commands.append(line.strip())
        commands.append("stop")

    threading.Thread(target=listen, daemon=True).start()
    feeding = False
    try:
        while "stop" not in commands:
            if "feed" in commands and not feeding:
                feeder.__enter__()
                feeding = True
            s = output.stats()
            stats = {
                "clients": s.clients,
                "streaming": s.streaming,
                "frames_out": s.frames_out,
                "fps_out": s.fps_out,
                "encode_ms": s.encode_ms,
                "viewers": hub.viewers(),
            }
            print(RESULT_MARK + json.dumps(stats), flush=True)
            time.sleep(0.1)
    finally:
        if feeding:
            feeder.__exit__()
        output.stop()
    return 0


@pytest.mark.slow
def test_rtsp_two_clients_at_once_with_latency_and_one_leaving(rtsp_available) -> None:
    with RtspChild() as output:
        time.sleep(0.5)
        # Nobody watches yet: nothing is encoded.
        assert output.stats["frames_out"] == 0 and not output.stats["streaming"]
        assert output.stats["viewers"] == 0

        pyav, ocv = ClientLog("pyav"), ClientLog("opencv")
        stop_pyav, stop_ocv = threading.Event(), threading.Event()
        threads = [
            threading.Thread(target=read_rtsp_pyav, args=(output.url, pyav, stop_pyav)),
            threading.Thread(target=read_rtsp_opencv, args=(output.url, ocv, stop_ocv)),
        ]
        for t in threads:
            t.start()
        _wait_until(
            lambda: (len(pyav.frames) >= 90 and len(ocv.frames) >= 90) or pyav.error,
            40,
            "90 frames on both clients",
        )
        stats_both = dict(output.stats)
        # OpenCV leaves; PyAV keeps receiving.
        stop_ocv.set()
        threads[1].join(10)
        before = len(pyav.frames)
        time.sleep(2.0)
        after = len(pyav.frames)
        stop_pyav.set()
        threads[0].join(10)

    for log in (pyav, ocv):
        assert not log.error, f"{log.name}: {log.error}"
        indices = log.indices()
        assert all(b > a for a, b in itertools.pairwise(indices)), log.name
    assert stats_both["clients"] == 2 and stats_both["streaming"]
    assert stats_both["encode_ms"] is not None
    assert after - before >= 30, f"PyAV got {after - before} frames in 2 s after OpenCV left"
    lat_pyav, lat_ocv = quantiles(pyav.latencies()), quantiles(ocv.latencies())
    print(
        f"\nRTSP {WIDTH}x{HEIGHT}@{FPS}, frame made -> decoded by the client: "
        f"PyAV (TCP) {lat_pyav}, OpenCV (UDP) {lat_ocv}; first frame after "
        f"{pyav.first_frame_s:.2f} s / {ocv.first_frame_s:.2f} s; x264enc "
        f"{stats_both['encode_ms'][0]:.1f} ms median per frame"
    )
    assert lat_pyav["median"] < 2000 and lat_ocv["median"] < 2000  # sanity, not a target


_RTSP_CHILD = """
import sys, av
with av.open(sys.argv[1], options={"rtsp_transport": "tcp"}, timeout=(10.0, 5.0)) as c:
    for i, frame in enumerate(c.decode(video=0)):
        print(i, flush=True)
"""


@pytest.mark.slow
def test_rtsp_killed_client_does_not_disturb_the_other_and_encoding_stops(rtsp_available):
    child = None
    with RtspChild(size=(320, 240)) as output:
        try:
            child = subprocess.Popen(
                [sys.executable, "-c", _RTSP_CHILD, output.url],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert child.stdout is not None
            # The child decodes frames...
            for _ in range(10):
                assert child.stdout.readline(), "the child client got no frames"
            log, stop = ClientLog("pyav"), threading.Event()
            reader = threading.Thread(target=read_rtsp_pyav, args=(output.url, log, stop))
            reader.start()
            _wait_until(lambda: len(log.frames) >= 15 or log.error, 30, "second client")
            _wait_until(lambda: output.stats["clients"] == 2, 5, "two clients")
            child.send_signal(signal.SIGKILL)  # ...and dies without a TEARDOWN
            child.wait(10)
            before = len(log.frames)
            time.sleep(2.0)
            assert len(log.frames) - before >= 20, "the other client stalled"
            _wait_until(lambda: output.stats["clients"] == 1, 10, "the dead client dropped")
            stop.set()
            reader.join(10)
            assert not log.error, log.error
            # Nobody left: the shared media is torn down and encoding stops.
            _wait_until(lambda: not output.stats["streaming"], 15, "media unprepared")
            frames_out = output.stats["frames_out"]
            time.sleep(1.0)
            assert output.stats["frames_out"] == frames_out
            assert output.stats["viewers"] == 0
        finally:
            if child is not None and child.poll() is None:
                child.kill()


@pytest.mark.slow
def test_rtsp_without_frames_fails_the_client_cleanly_and_recovers(rtsp_available) -> None:
    import av

    first_frame_timeout_s = 5.0  # edge_vision.outputs.rtsp_server.FIRST_FRAME_TIMEOUT_S
    with RtspChild(feed=False, size=(320, 240)) as output:
        started = time.monotonic()
        with pytest.raises(av.error.FFmpegError):  # an error reply, not an endless wait
            av.open(output.url, options={"rtsp_transport": "tcp"}, timeout=(20.0, 5.0))
        assert time.monotonic() - started < first_frame_timeout_s + 5
        _wait_until(lambda: not output.stats["streaming"], 10, "the failed media torn down")
        _wait_until(
            lambda: output.stats["clients"] == 0 and output.stats["viewers"] == 0, 10, "cleaned"
        )
        output.feed()  # frames now: a new client plays
        log, stop = ClientLog("pyav"), threading.Event()
        reader = threading.Thread(target=read_rtsp_pyav, args=(output.url, log, stop))
        reader.start()
        _wait_until(lambda: len(log.frames) >= 10 or log.error, 20, "frames")
        stop.set()
        reader.join(10)
        assert not log.error, log.error


# -- MJPEG ----------------------------------------------------------------------------------------


class MjpegClient:
    """Reads ``/stream.mjpg`` and parses the multipart parts: (arrival ms, index, stamp_ms)."""

    def __init__(self, url: str, name: str = "client") -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname, parts.port, parts.path
        self.log = ClientLog(name)
        self.content_type = ""
        self.part_types: set[str] = set()
        self._stop = threading.Event()
        self._conn: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> MjpegClient:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            self._conn.request("GET", self.path)
            response = self._conn.getresponse()
            self.content_type = response.getheader("Content-Type", "")
            if response.status != 200:
                self.log.error = f"HTTP {response.status}"
                return
            boundary = self.content_type.split("boundary=", 1)[1].strip()
            started = time.monotonic()
            while not self._stop.is_set():
                line = response.readline()
                if not line:
                    return
                if line.strip() != f"--{boundary}".encode():
                    continue
                headers: dict[str, str] = {}
                while (line := response.readline().strip()) != b"":
                    key, _, value = line.decode().partition(":")
                    headers[key.strip().lower()] = value.strip()
                data = response.read(int(headers["content-length"]))
                arrival = now_ms32()
                self.part_types.add(headers.get("content-type", ""))
                if self.log.first_frame_s is None:
                    self.log.first_frame_s = time.monotonic() - started
                image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                code = read_pattern_code(image)
                if code is not None:
                    self.log.frames.append((arrival, code[0], code[1]))
        except Exception as exc:
            if not self._stop.is_set():
                self.log.error = f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        """Hang up abruptly (close the socket mid-stream)."""
        self._stop.set()
        if self._conn is not None and self._conn.sock is not None:
            self._conn.sock.shutdown(socket.SHUT_RDWR)
            self._conn.close()
        self._thread.join(5)


@pytest.fixture()
def http_output() -> Iterator[tuple[FrameHub, Any, Any]]:
    from edge_vision.outputs.http_server import HttpServer
    from edge_vision.outputs.mjpeg import MjpegOutput, MjpegSettings

    hub = FrameHub()
    server = HttpServer("127.0.0.1")
    mjpeg = MjpegOutput(hub, server, 0, settings=MjpegSettings(max_fps=15, max_clients=3))
    server.start()
    try:
        yield hub, server, mjpeg
    finally:
        server.stop()


def test_mjpeg_clients_parse_the_stream_and_one_hanging_up_does_not_disturb_the_other(
    http_output,
) -> None:
    hub, _server, mjpeg = http_output
    base = mjpeg.url.removesuffix("stream.mjpg")
    # No frame yet: a snapshot waits a little, then says so.
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(base + "snapshot.jpg", timeout=10)
    assert err.value.code == 503
    with PatternFeeder(hub):
        page = urllib.request.urlopen(base, timeout=5).read().decode()
        assert '<img id="stream" src="stream.mjpg"' in page
        snapshot = urllib.request.urlopen(base + "snapshot.jpg", timeout=5)
        assert snapshot.headers["Content-Type"] == "image/jpeg"
        image = cv2.imdecode(np.frombuffer(snapshot.read(), np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (HEIGHT, WIDTH, 3) and read_pattern_code(image) is not None

        a, b = MjpegClient(mjpeg.url, "a").start(), MjpegClient(mjpeg.url, "b").start()
        _wait_until(lambda: len(a.log.frames) >= 30 and len(b.log.frames) >= 30, 20, "frames")
        assert mjpeg.stats().clients == 2 and hub.viewers("mjpeg") == 2
        a.close()
        before = len(b.log.frames)
        time.sleep(2.0)
        got = len(b.log.frames) - before
        _wait_until(lambda: mjpeg.stats().clients == 1, 5, "the hung-up client dropped")
        b.close()
    _wait_until(lambda: mjpeg.stats().clients == 0 and hub.viewers() == 0, 5, "all gone")
    for client in (a, b):
        assert not client.log.error, client.log.error
        assert client.content_type.startswith("multipart/x-mixed-replace; boundary=")
        assert client.part_types == {"image/jpeg"}
        indices = client.log.indices()
        assert all(y > x for x, y in itertools.pairwise(indices))
    # 15 fps cap on a 30 fps source, for b alone after a left.
    assert 20 <= got <= 36, got
    lat = quantiles(b.log.latencies())
    encode = mjpeg.stats().encode_ms
    print(f"\nMJPEG {WIDTH}x{HEIGHT} at 15 fps: frame made -> parsed {lat}; JPEG {encode} ms")


def test_mjpeg_a_stalled_client_does_not_slow_the_others_and_the_limit_holds(http_output):
    hub, _server, mjpeg = http_output
    with PatternFeeder(hub):
        # A client that asks for the stream and never reads: its socket buffers fill up.
        stalled = socket.create_connection(("127.0.0.1", urlsplit(mjpeg.url).port))
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        path = "/stream.mjpg"
        stalled.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        try:
            _wait_until(lambda: mjpeg.stats().clients == 1, 5, "stalled client connected")
            fast = MjpegClient(mjpeg.url, "fast").start()
            time.sleep(1.0)
            before = len(fast.log.frames)
            time.sleep(3.0)
            rate = (len(fast.log.frames) - before) / 3.0
            # The limit is 3 stream clients: a fourth is refused, the others carry on.
            third = MjpegClient(mjpeg.url, "third").start()
            _wait_until(lambda: mjpeg.stats().clients == 3, 5, "third client")
            fourth = MjpegClient(mjpeg.url, "fourth").start()
            _wait_until(lambda: fourth.log.error != "", 5, "fourth refused")
            assert fourth.log.error == "HTTP 503"
            fast.close()
            third.close()
        finally:
            stalled.close()
    assert not fast.log.error, fast.log.error
    assert rate >= 10, f"the fast client got {rate:.1f} fps next to a stalled one"


def test_mjpeg_is_rendered_by_headless_chromium(http_output) -> None:
    from edge_vision.testing.browser import browser_unavailable_reason, run_browser_script

    reason = browser_unavailable_reason()
    if reason:
        pytest.skip(f"no browser here: {reason}")
    hub, _server, mjpeg = http_output
    js = r"""
await page.waitForFunction(() => document.getElementById('stream').naturalWidth > 0,
                           null, { polling: 50 });
const img = await page.evaluate(() => {
  const el = document.getElementById('stream');
  return { naturalWidth: el.naturalWidth, naturalHeight: el.naturalHeight };
});
await page.waitForTimeout(500);
const png = await page.locator('#stream').screenshot();
return { img, png: png.toString('base64') };
"""
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            seen.append(mjpeg.stats().clients)

    with PatternFeeder(hub):
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            page = run_browser_script(js, url=mjpeg.url.removesuffix("stream.mjpg"), timeout_s=60)
        finally:
            done.set()
            watcher.join()
    value = page["value"]
    assert value["img"] == {"naturalWidth": WIDTH, "naturalHeight": HEIGHT}
    shot = cv2.imdecode(np.frombuffer(base64.b64decode(value["png"]), np.uint8), cv2.IMREAD_COLOR)
    assert shot is not None and shot.shape[0] > 100 and shot.shape[1] > 100
    # The test pattern, not a blank or broken image: colour bars, a ramp, many distinct colours.
    assert float(shot.std()) > 40, float(shot.std())
    assert len(np.unique(shot.reshape(-1, 3)[::7], axis=0)) > 50
    assert max(seen) == 1  # the page's <img> was an MJPEG client
    assert not page["page_errors"], page["page_errors"]


# -- WebRTC (headless Chromium, loopback-only namespace) --------------------------------------

# Reads the test pattern's code strip (frame index, wall-clock ms) from the displayed frames,
# like read_pattern_code: block centres of two rows of 32 blocks at the bottom.
_READ_CODES_JS = r"""
async (count) => {
  const v = document.getElementById('video');
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d', { willReadFrequently: true });
  const W = c.width, H = c.height;
  const blockW = Math.floor(W / 32), blockH = Math.max(4, Math.min(16, Math.floor(H / 16)));
  const top = H - 2 * blockH;
  const out = [];
  function read() {
    const rows = [];
    for (let r = 0; r < 2; r++) {
      const cy = top + r * blockH + Math.floor(blockH / 2);
      const px = g.getImageData(0, cy - 1, W, 3).data;
      let value = 0;
      for (let bit = 0; bit < 32; bit++) {
        const cx = bit * blockW + Math.floor(blockW / 2);
        let sum = 0;
        for (let dy = 0; dy < 3; dy++) for (let dx = -1; dx <= 1; dx++) {
          const i = (dy * W + cx + dx) * 4;
          sum += 0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2];
        }
        value = value * 2 + (sum / 9 > 127 ? 1 : 0);
      }
      rows.push(value);
    }
    return rows;
  }
  await new Promise((resolve) => {
    const step = () => {
      const shown = Date.now();
      g.drawImage(v, 0, 0, W, H);
      const [index, stamp] = read();
      out.push({ index, stamp, shown });
      if (out.length >= count) resolve(); else v.requestVideoFrameCallback(step);
    };
    v.requestVideoFrameCallback(step);
  });
  return out;
}
"""

_WEBRTC_JS = (
    WEBRTC_VIEWER_JS
    + r"""
const readCodes = """
    + _READ_CODES_JS
    + r""";
const t0 = Date.now();
await page.waitForFunction(playing, null, { polling: 50 });
const firstPlayingMs = Date.now() - t0;
// Latency from the frames shown while this page is in front (a background tab is throttled).
const codes = await page.evaluate(readCodes, args.samples);
const second = await context.newPage();
await second.goto(args.url);
await second.waitForFunction(playing, null, { polling: 50 });
await page.bringToFront();
const both = [await viewerStats(page), await viewerStats(second)];
// The second viewer leaves (its page closes its peer connection); the first keeps playing.
await second.close();
const before = await viewerStats(page);
await page.waitForTimeout(2000);
const after = await viewerStats(page);
return { firstPlayingMs, codes, both, before, after, now: Date.now() };
"""
)


def _webrtc_scenario(codec: str) -> dict[str, Any]:
    """Runs in the namespace: server + feeder + Chromium with two viewers."""
    from edge_vision.outputs.http_server import HttpServer
    from edge_vision.outputs.webrtc_server import WebRtcOutput, WebRtcSettings
    from edge_vision.testing.browser import run_browser_script

    interfaces = [name for _, name in socket.if_nameindex()]
    hub = FrameHub()
    server = HttpServer("127.0.0.1")
    webrtc = WebRtcOutput(
        hub, server, 0, settings=WebRtcSettings(codec=codec), ice_addresses=("127.0.0.1",)
    )
    server.start()
    stats_during: list[Any] = []
    try:
        with PatternFeeder(hub):
            idle_frames = webrtc.stats().frames_out
            watcher = threading.Event()

            def watch() -> None:
                while not watcher.wait(0.5):
                    stats_during.append(webrtc.stats())

            threading.Thread(target=watch, daemon=True).start()
            page = run_browser_script(
                _WEBRTC_JS,
                url=webrtc.url,
                timeout_s=90,
                fake_camera=True,  # its permission makes Chromium offer 127.0.0.1 candidates
                extra_flags=["--autoplay-policy=no-user-gesture-required"],
                args={"url": webrtc.url, "samples": 60},
            )
            watcher.set()
            time.sleep(1.0)
            stats_after = webrtc.stats()
    finally:
        server.stop()
    value = page["value"]
    codes = value.pop("codes")
    # A code misread in a lossy frame gives an absurd value; count those instead.
    latencies = [(c["shown"] % 2**32 - c["stamp"]) % 2**32 for c in codes]
    plausible = [v for v in latencies if v < 10_000]
    indices = [c["index"] for c in codes]
    return {
        "interfaces": interfaces,
        "idle_frames_out": idle_frames,
        "max_peers_seen": max((s.connected for s in stats_during), default=0),
        "encode_ms": stats_after.encode_ms,
        "fps_out": max((s.fps_out for s in stats_during), default=0.0),
        "peers_after": stats_after.peers,
        "latency_ms": quantiles(plausible),
        "misread_codes": len(latencies) - len(plausible),
        "indices_increasing": sum(b > a for a, b in itertools.pairwise(indices))
        >= len(indices) - 1 - (len(latencies) - len(plausible)),
        "samples": len(codes),
        **value,
    }


def _run_webrtc_scenario(codec: str) -> dict[str, Any]:
    from edge_vision.testing.browser import (
        browser_unavailable_reason,
        run_in_loopback_namespace,
    )

    reason = browser_unavailable_reason()
    if reason:
        pytest.skip(f"no browser here: {reason}")
    command = [sys.executable, os.path.abspath(__file__), "webrtc-scenario", "--codec", codec]
    if browser_unavailable_reason(namespace=True) is None:
        done = run_in_loopback_namespace(command, timeout_s=150)
    else:  # no namespace: same scenario on the host, ICE still only on 127.0.0.1
        done = subprocess.run(command, capture_output=True, text=True, timeout=150)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    raise AssertionError(f"no scenario result (exit {done.returncode}):\n{done.stderr[-4000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_webrtc_two_browser_viewers_play_and_one_leaving_does_not_stop_the_other(codec):
    result = _run_webrtc_scenario(codec)
    print(f"\nWebRTC ({codec}) scenario: {json.dumps(result)}")
    assert "error" not in result, result.get("error")
    if result["interfaces"] != ["lo"]:
        print("(no loopback-only namespace here: ran on the host network, ICE on 127.0.0.1)")
    assert result["idle_frames_out"] == 0  # nothing encoded before a viewer connected
    for stats in result["both"]:
        assert stats["videoWidth"] == WIDTH and stats["videoHeight"] == HEIGHT, stats
        assert stats["codec"] == {"h264": "video/H264", "vp8": "video/VP8"}[codec], stats
        assert stats["local"]["address"] == "127.0.0.1", stats
        assert stats["remote"]["address"] == "127.0.0.1", stats
    assert result["max_peers_seen"] == 2
    before, after = result["before"], result["after"]
    assert after["currentTime"] - before["currentTime"] > 1.0, (before, after)
    assert after["framesDecoded"] - before["framesDecoded"] >= 20, (before, after)
    assert result["samples"] == 60 and result["indices_increasing"]
    assert result["misread_codes"] <= 3, result["misread_codes"]
    if codec == "h264":
        assert result["encode_ms"] is not None  # the shared encoder's
    print(f"WebRTC ({codec}) frame made -> shown in Chromium: {result['latency_ms']} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["webrtc-scenario", "rtsp-serve"])
    parser.add_argument("--codec", default="h264")
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--size", default=f"{WIDTH}x{HEIGHT}")
    parser.add_argument("--max-fps", type=float, default=30.0)
    parser.add_argument("--feed", action="store_true")
    args = parser.parse_args(argv)
    if args.scenario == "rtsp-serve":
        return _rtsp_serve(args)
    try:
        result = _webrtc_scenario(args.codec)
    except Exception as exc:
        import traceback

        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
