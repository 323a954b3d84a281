"""RtspSource and ReconnectingSource against a real GStreamer RTSP server on 127.0.0.1."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from edge_vision.core.frame import Frame
from edge_vision.sources import (
    ReconnectingSource,
    RtspSource,
    SourceDisconnected,
    SourceOpenError,
    VideoSource,
    open_source,
    read_pattern_code,
)
from edge_vision.testing.rtsp_server import RtspTestServer, rtsp_server_unavailable_reason

WIDTH, HEIGHT, FPS = 320, 240, 15


@pytest.fixture(scope="module", autouse=True)
def _need_gstreamer_rtsp() -> None:
    reason = rtsp_server_unavailable_reason()
    if reason is not None:
        pytest.fail(f"GStreamer RTSP server not usable here ({reason}): run `make setup`")


@pytest.fixture()
def server() -> Iterator[RtspTestServer]:
    with RtspTestServer(width=WIDTH, height=HEIGHT, fps=FPS) as srv:
        yield srv


def read_with_deadline(source: VideoSource, deadline_s: float) -> Frame | None:
    """``read()``, but close the source if it blocks longer than ``deadline_s``."""
    watchdog = threading.Timer(deadline_s, source.close)
    watchdog.start()
    try:
        return source.read()
    finally:
        watchdog.cancel()


def test_rtsp_source_reads_live_frames(server: RtspTestServer) -> None:
    started = time.monotonic()
    with RtspSource(server.url) as source:
        open_s = time.monotonic() - started
        assert source.size == (WIDTH, HEIGHT)
        assert source.nominal_fps == pytest.approx(FPS, rel=0.1)
        assert source.is_live
        frames = [read_with_deadline(source, 5.0) for _ in range(10)]
    assert open_s < 3.0
    assert all(f is not None for f in frames)
    codes = []
    for frame in frames:
        assert frame is not None
        assert frame.image.shape == (HEIGHT, WIDTH, 3) and frame.image.dtype == np.uint8
        code = read_pattern_code(frame.image)
        assert code is not None
        codes.append(code)
        # The server stamps production time: end-to-end latency, loosely bounded.
        latency_ms = (frame.stamp_ns // 1_000_000 - code[1]) % 2**32
        assert latency_ms < 1000
    indices = [c[0] for c in codes]
    assert all(b > a for a, b in itertools.pairwise(indices)), indices
    first, last = frames[0], frames[-1]
    assert first is not None and last is not None
    assert not np.array_equal(first.image, last.image), "content changes"


def test_reconnects_after_server_restart(server: RtspTestServer) -> None:
    port = server.port
    source = open_source(server.url, initial_backoff_s=0.2, max_backoff_s=1.0)
    assert isinstance(source, ReconnectingSource)
    with source:
        for _ in range(5):
            assert read_with_deadline(source, 5.0) is not None
        before = source.stats.frames_read

        server.stop()
        stopped = time.monotonic()
        server.start()
        assert server.port == port

        frame = None
        while source.reconnects < 1:
            frame = read_with_deadline(source, 10.0)
            assert frame is not None, "read() must keep delivering, not end"
        recovered_s = time.monotonic() - stopped
        for _ in range(5):
            frame = read_with_deadline(source, 5.0)
            assert frame is not None
        assert source.state == "connected"
        stats = source.stats
    assert frame is not None
    code = read_pattern_code(frame.image)
    assert code is not None and code[0] < 200, "frames come from the restarted server"
    assert stats.reconnects >= 1
    assert stats.frames_read >= before + 6
    assert stats.last_error is not None and "stream" in stats.last_error
    assert recovered_s < 8.0


def test_silent_server_is_noticed(server: RtspTestServer) -> None:
    with RtspSource(server.url, read_timeout_s=2.0) as source:
        assert read_with_deadline(source, 5.0) is not None
        server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(SourceDisconnected, match="no data"):
                while True:
                    read_with_deadline(source, 6.0)
            assert time.monotonic() - started < 4.0
        finally:
            server.resume()


def test_close_interrupts_a_blocked_reconnect(server: RtspTestServer) -> None:
    source = open_source(server.url, initial_backoff_s=0.2, max_backoff_s=0.5)
    source.open()
    assert read_with_deadline(source, 5.0) is not None
    server.stop()  # gone for good: read() would retry forever
    threading.Timer(1.0, source.close).start()
    started = time.monotonic()
    while (frame := source.read()) is not None:
        assert frame.image.shape == (HEIGHT, WIDTH, 3)
    assert time.monotonic() - started < 5.0
    assert source.state == "closed"
    assert source.stats.reconnects == 0


def test_wrong_path_is_open_error(server: RtspTestServer) -> None:
    started = time.monotonic()
    with pytest.raises(SourceOpenError, match="404"):
        open_source(server.url.replace("/test", "/nothing-here"))
    assert time.monotonic() - started < 3.0
