"""WebRtcSource against real aiortc senders in this process, all on 127.0.0.1.

The sender is a Python aiortc peer sending the numbered test pattern (``render_pattern``) over
VP8, signalling through the source's own HTTP ``/offer`` endpoint, exactly as the page does.
The browser path (real Chromium, fake webcam) is covered by test/ros/test_webrtc_browser.py.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)

from edge_vision.core.frame import Frame
from edge_vision.core.ice import ice_host_candidates
from edge_vision.sources import (
    SourceOpenError,
    VideoSource,
    create_source,
    read_pattern_code,
    render_pattern,
)
from edge_vision.sources.webrtc_source import WebRtcSource, ice_host_addresses

WIDTH, HEIGHT = 320, 240


@pytest.fixture(autouse=True)
def _webrtc_scheme_registered() -> None:
    """test_sources.py registers a stand-in "webrtc" builder and then removes the scheme for
    the rest of the session; put the real one back."""
    from edge_vision.sources import factory

    factory.register_scheme("webrtc", factory._build_webrtc)


class PatternTrack(VideoStreamTrack):
    """The numbered test pattern at 30 fps, frame numbers starting at ``first_index``."""

    def __init__(self, first_index: int = 0) -> None:
        super().__init__()
        self.index = first_index
        self.frozen = False  # True: stop producing frames (a frozen tab), connection stays

    async def recv(self) -> av.VideoFrame:
        while self.frozen:
            await asyncio.sleep(0.05)
        pts, time_base = await self.next_timestamp()
        image = render_pattern(self.index, WIDTH, HEIGHT, stamp_ms=int(time.time() * 1000))
        self.index += 1
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts, frame.time_base = pts, time_base
        return frame


class PythonSender:
    """An aiortc peer in a thread of its own that sends ``PatternTrack`` to a WebRtcSource."""

    def __init__(self, page_url: str, first_index: int = 0) -> None:
        self.page_url = page_url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.pc: RTCPeerConnection | None = None
        self.track = PatternTrack(first_index)
        self.answer_sdp = ""
        self.states: list[str] = []

    def _run(self, coro: Any, timeout: float = 15.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def connect(self) -> None:
        self._run(self._connect())

    async def _connect(self) -> None:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc = pc
        pc.on("connectionstatechange", lambda: self.states.append(pc.connectionState))
        pc.addTrack(self.track)
        with ice_host_candidates(("127.0.0.1",)):
            await pc.setLocalDescription(await pc.createOffer())
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                self.page_url + "offer",
                json={"sdp": pc.localDescription.sdp, "type": pc.localDescription.type},
            ) as response,
        ):
            assert response.status == 200, await response.text()
            answer = await response.json()
        self.answer_sdp = answer["sdp"]
        await pc.setRemoteDescription(RTCSessionDescription(**answer))

    def close_peer(self) -> None:
        if self.pc is not None:
            self._run(self.pc.close())

    def stop(self) -> None:
        with_timeout = 10.0
        try:
            self.close_peer()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(with_timeout)
            self.loop.close()


@pytest.fixture()
def source() -> Iterator[WebRtcSource]:
    src = WebRtcSource("127.0.0.1", 0, read_timeout_s=2.0)
    src.open()
    try:
        yield src
    finally:
        src.close()


@pytest.fixture()
def senders() -> Iterator[list[PythonSender]]:
    made: list[PythonSender] = []
    yield made
    for sender in made:
        sender.stop()


def read_with_deadline(source: VideoSource, deadline_s: float) -> Frame | None:
    """``read()``, but close the source if it blocks longer than ``deadline_s``."""
    watchdog = threading.Timer(deadline_s, source.close)
    watchdog.start()
    try:
        return source.read()
    finally:
        watchdog.cancel()


def read_codes(source: VideoSource, count: int, deadline_s: float = 10.0) -> list[int]:
    codes = []
    for _ in range(count):
        frame = read_with_deadline(source, deadline_s)
        assert frame is not None, "no frame (source closed by the watchdog)"
        code = read_pattern_code(frame.image)
        assert code is not None
        codes.append(code[0])
    return codes


def wait_until(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def test_frames_from_an_aiortc_sender_decode_as_the_pattern(
    source: WebRtcSource, senders: list[PythonSender]
) -> None:
    assert source.state == "reconnecting"  # waiting for a browser
    assert source.port and source.page_url == f"http://127.0.0.1:{source.port}/"
    sender = PythonSender(source.page_url)
    senders.append(sender)
    before = time.time_ns()
    sender.connect()
    frames = [read_with_deadline(source, 10.0) for _ in range(15)]
    assert all(f is not None for f in frames)
    assert source.state == "connected"
    assert source.size == (WIDTH, HEIGHT)
    assert source.sender == "127.0.0.1"
    assert source.reconnects == 0
    indices = []
    for frame in frames:
        assert frame is not None
        assert frame.image.shape == (HEIGHT, WIDTH, 3) and frame.encoding == "bgr8"
        assert frame.meta["sender"] == "127.0.0.1"
        code = read_pattern_code(frame.image)
        assert code is not None
        indices.append(code[0])
        # Stamped on arrival, after the sender rendered it (stamp_ms in the picture).
        assert before <= frame.stamp_ns <= time.time_ns()
        assert frame.stamp_ns / 1e6 >= code[1] - 1
    # VP8 over loopback: the pattern numbers read back in order, small gaps at most.
    assert indices == sorted(indices)
    assert indices[-1] - indices[0] < 15 + 10
    assert [f.index for f in frames if f] == sorted(f.index for f in frames if f)


def test_answer_offers_only_loopback_candidates(
    source: WebRtcSource, senders: list[PythonSender]
) -> None:
    sender = PythonSender(source.page_url)
    senders.append(sender)
    sender.connect()
    candidates = re.findall(r"^a=candidate:.*$", sender.answer_sdp, flags=re.M)
    assert candidates, sender.answer_sdp
    for line in candidates:
        address = line.split()[4]
        assert address == "127.0.0.1", line
    assert "typ srflx" not in sender.answer_sdp and "typ relay" not in sender.answer_sdp


def test_a_new_sender_replaces_the_current_one(
    source: WebRtcSource, senders: list[PythonSender]
) -> None:
    first = PythonSender(source.page_url, first_index=0)
    senders.append(first)
    first.connect()
    assert max(read_codes(source, 5)) < 100_000
    second = PythonSender(source.page_url, first_index=100_000)
    senders.append(second)
    second.connect()
    # Frames of the first sender still queued may come first; then only the second's.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if read_codes(source, 1)[0] >= 100_000:
            break
    assert min(read_codes(source, 10)) >= 100_000
    assert source.reconnects == 1
    assert source.state == "connected"
    # The replaced sender's connection was closed by the source.
    assert wait_until(lambda: first.states and first.states[-1] == "closed", 10), first.states


def test_a_disconnected_sender_is_reported_and_the_next_one_is_received(
    source: WebRtcSource, senders: list[PythonSender]
) -> None:
    first = PythonSender(source.page_url)
    senders.append(first)
    first.connect()
    read_codes(source, 3)
    first.close_peer()  # like closing the tab: RTCP BYE, DTLS close
    assert wait_until(lambda: source.state == "reconnecting", 10)
    assert source.last_error is not None and "disconnected" in source.last_error
    assert "waiting for the next browser" in source.last_error
    assert source.is_open
    second = PythonSender(source.page_url, first_index=500)
    senders.append(second)
    second.connect()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and read_codes(source, 1)[0] < 500:
        pass
    assert min(read_codes(source, 5)) >= 500
    assert source.state == "connected"
    assert source.reconnects == 1
    assert source.stats.state == "connected"


def test_a_stalled_sender_times_out(source: WebRtcSource, senders: list[PythonSender]) -> None:
    sender = PythonSender(source.page_url)
    senders.append(sender)
    sender.connect()
    read_codes(source, 2)
    # Stop sending media without closing anything (a frozen tab): the read timeout notices.
    sender.track.frozen = True
    assert wait_until(lambda: source.state == "reconnecting", 10)
    assert source.last_error is not None and "no video for 2 s" in source.last_error


def test_close_unblocks_a_waiting_read(source: WebRtcSource) -> None:
    result: list[Frame | None] = []
    reader = threading.Thread(target=lambda: result.append(source.read()))
    reader.start()
    time.sleep(0.3)
    assert reader.is_alive()
    started = time.monotonic()
    source.close()
    reader.join(5)
    assert not reader.is_alive() and result == [None]
    assert time.monotonic() - started < 3
    assert source.state == "closed"


def test_page_and_status(source: WebRtcSource) -> None:
    async def fetch() -> tuple[str, dict[str, Any]]:
        async with aiohttp.ClientSession() as http:
            async with http.get(source.page_url) as response:
                assert response.status == 200
                assert response.content_type == "text/html"
                page = await response.text()
            async with http.get(source.page_url + "status") as response:
                status = await response.json()
            async with http.post(source.page_url + "offer", data="nonsense") as response:
                assert response.status == 400
            return page, status

    page, status = asyncio.run(fetch())
    assert "getUserMedia" in page and "iceServers: []" in page
    assert status["state"] == "reconnecting" and status["sender"] is None


def test_reopen_serves_again(source: WebRtcSource, senders: list[PythonSender]) -> None:
    port = source.port
    source.close()
    assert source.port is None
    source.open()
    sender = PythonSender(source.page_url)
    senders.append(sender)
    sender.connect()
    assert len(read_codes(source, 3)) == 3
    assert port is not None


# -- URI, options, errors -------------------------------------------------------------------------


def test_uri_and_options() -> None:
    src = create_source("webrtc://127.0.0.1:9123?width=640&height=480&fps=15&queue_size=2")
    assert isinstance(src, WebRtcSource)
    assert src.page_url == "http://127.0.0.1:9123/"
    assert src.nominal_fps == 15 and src.is_live
    assert src._video_constraints == {
        "width": {"ideal": 640},
        "height": {"ideal": 480},
        "frameRate": {"ideal": 15.0},
    }
    default = create_source("webrtc://localhost")
    assert isinstance(default, WebRtcSource) and default.page_url == "http://localhost:8089/"
    with pytest.raises(SourceOpenError, match="takes no path"):
        create_source("webrtc://127.0.0.1:9123/cam")
    with pytest.raises(SourceOpenError, match="not understood"):
        create_source("webrtc://127.0.0.1:9123?bogus=1")
    with pytest.raises(SourceOpenError, match="certfile and keyfile"):
        create_source("webrtc://127.0.0.1:9123?certfile=/x.pem")


def test_ice_addresses_follow_the_bind_address() -> None:
    assert ice_host_addresses("127.0.0.1") == ("127.0.0.1",)
    assert ice_host_addresses("localhost") == ("127.0.0.1",)
    assert ice_host_addresses("::1") == ("::1",)
    assert ice_host_addresses("192.168.1.20") == ("192.168.1.20",)
    assert ice_host_addresses("0.0.0.0") is None
    src = create_source("webrtc://0.0.0.0:9123?ice_addresses=10.0.0.2,127.0.0.1")
    assert isinstance(src, WebRtcSource) and src._ice_addresses == ("10.0.0.2", "127.0.0.1")


def test_port_in_use_is_a_clear_open_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        src = create_source(f"webrtc://127.0.0.1:{port}")
        with pytest.raises(SourceOpenError, match=f"cannot listen on 127.0.0.1:{port}"):
            src.open()
        assert not src.is_open


def test_https_with_a_certificate(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge-vision-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    src = create_source(f"webrtc://127.0.0.1:0?certfile={certfile}&keyfile={keyfile}")
    assert isinstance(src, WebRtcSource)
    with src:
        assert src.page_url.startswith("https://127.0.0.1:")

        async def fetch() -> int:
            async with aiohttp.ClientSession() as http, http.get(src.page_url, ssl=False) as r:
                return r.status

        assert asyncio.run(fetch()) == 200
    bad = create_source(f"webrtc://127.0.0.1:0?certfile={keyfile}&keyfile={certfile}")
    with pytest.raises(SourceOpenError, match="cannot load the HTTPS certificate"):
        bad.open()


def test_mdns_candidates_are_dropped() -> None:
    from edge_vision.core.ice import strip_mdns_candidates

    sdp = (
        "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        "a=candidate:1 1 udp 2122260223 4f3c-aa.local 50000 typ host\r\n"
        "a=candidate:2 1 udp 2122260223 127.0.0.1 50001 typ host\r\n"
    )
    assert strip_mdns_candidates(sdp) == (
        "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        "a=candidate:2 1 udp 2122260223 127.0.0.1 50001 typ host\r\n"
    )


def test_ice_hook_applies_per_block_and_restores_the_default() -> None:
    """The source and video_output share one aioice hook (edge_vision.core.ice): each block
    sees its own addresses, and outside any block aioice's default comes back."""
    import aioice.ice

    with ice_host_candidates(("127.0.0.1",)):
        assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1"]
    with ice_host_candidates(["127.0.0.2"]):
        assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.2"]
    with ice_host_candidates(("127.0.0.1",)):
        assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1"]
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(True, False)


def test_an_offer_that_never_connects_is_reported(source: WebRtcSource) -> None:
    async def offer_without_candidates() -> int:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(PatternTrack())
        with ice_host_candidates(("127.0.0.1",)):
            await pc.setLocalDescription(await pc.createOffer())
        sdp = "\r\n".join(
            line
            for line in pc.localDescription.sdp.splitlines()
            if not line.startswith("a=candidate:")
        )
        async with (
            aiohttp.ClientSession() as http,
            http.post(source.page_url + "offer", json={"sdp": sdp + "\r\n", "type": "offer"}) as r,
        ):
            status = r.status
        await pc.close()
        return status

    assert asyncio.run(offer_without_candidates()) == 200
    assert wait_until(lambda: source.last_error is not None, 10)
    assert "no video for 2 s after the offer (ICE" in (source.last_error or "")
    assert source.state == "reconnecting" and source.reconnects == 0
