"""Video sources on real media: vtest.avi (Debian opencv-doc), image folders, test patterns,
error cases, and the reconnect logic against a scripted flaky source."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_vision.core.frame import Frame
from edge_vision.sources import (
    FileSource,
    ImageFolderSource,
    ReconnectingSource,
    RtspSource,
    SourceDisconnected,
    SourceError,
    SourceNotFound,
    SourceOpenError,
    TestPatternSource,
    V4L2Source,
    VideoSource,
    create_source,
    open_source,
    read_pattern_code,
    register_scheme,
    render_pattern,
    supported_schemes,
)
from edge_vision.sources import factory as factory_module

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
VTEST_FRAMES = 795


@pytest.fixture(scope="module")
def vtest() -> Path:
    if not VTEST.exists():
        pytest.fail(f"{VTEST} missing: install the apt packages in scripts/apt-packages.txt")
    return VTEST


@pytest.fixture(scope="module")
def vtest_frames(vtest: Path) -> list[np.ndarray]:
    """The first five frames of vtest.avi, decoded by OpenCV independently of our code."""
    capture = cv2.VideoCapture(str(vtest))
    frames = []
    for _ in range(5):
        ok, image = capture.read()
        assert ok
        frames.append(image)
    capture.release()
    return frames


# -- FileSource -------------------------------------------------------------------------------


def test_file_source_reads_real_video(vtest: Path, vtest_frames: list[np.ndarray]) -> None:
    before = time.time_ns()
    with open_source(str(vtest)) as source:
        assert isinstance(source, FileSource)
        assert source.size == (768, 576)
        assert source.nominal_fps == pytest.approx(10.0)
        frames = [source.read() for _ in range(30)]
    assert all(f is not None for f in frames)
    pts = [f.source_pts for f in frames if f is not None]
    assert pts[0] == pytest.approx(0.0)
    assert all(b > a for a, b in itertools.pairwise(pts)), "pts must increase"
    assert pts[10] == pytest.approx(1.0)  # 10 fps
    for i, frame in enumerate(frames):
        assert frame is not None
        assert frame.image.shape == (576, 768, 3)
        assert frame.image.dtype == np.uint8
        assert frame.encoding == "bgr8"
        assert frame.index == i
        assert before <= frame.stamp_ns <= time.time_ns()
    # Same pixels as OpenCV's own decoder, up to colour-conversion rounding.
    first = frames[0]
    assert first is not None
    diff = np.abs(first.image.astype(int) - vtest_frames[0].astype(int))
    assert diff.mean() < 3.0


def test_file_source_stops_at_end(vtest: Path) -> None:
    source = FileSource(vtest)
    source.open()
    count = 0
    last: Frame | None = None
    while (frame := source.read()) is not None:
        last = frame
        count += 1
    assert count == VTEST_FRAMES
    assert last is not None and last.source_pts == pytest.approx(79.4)
    assert source.read() is None, "stays at the end"
    assert source.stats.frames_read == VTEST_FRAMES
    assert source.stats.frames_dropped == 0
    source.close()
    assert source.read() is None, "closed source reads None"


def test_file_source_loop_wraps_around(vtest: Path) -> None:
    # file:// URI with the option in the query string.
    with open_source(f"file://{vtest}?loop=1") as source:
        assert isinstance(source, FileSource) and source.loop
        # Keep only the frames looked at: all of them would be 1 GB.
        kept: dict[int, Frame | None] = {}
        for i in range(VTEST_FRAMES + 3):
            frame = source.read()
            assert frame is not None
            if i in (0, VTEST_FRAMES - 1, VTEST_FRAMES):
                kept[i] = frame
    first, last_of_pass, wrapped = kept[0], kept[VTEST_FRAMES - 1], kept[VTEST_FRAMES]
    assert first is not None and last_of_pass is not None and wrapped is not None
    assert last_of_pass.meta["loop"] == "0" and wrapped.meta["loop"] == "1"
    assert wrapped.source_pts == pytest.approx(0.0), "pts restart with the file"
    assert wrapped.index == VTEST_FRAMES, "index keeps counting"
    assert np.array_equal(wrapped.image, first.image)


def test_file_source_reopen_starts_over(vtest: Path) -> None:
    source = FileSource(vtest)
    with source:
        for _ in range(5):
            source.read()
    with source:
        frame = source.read()
    assert frame is not None and frame.index == 0 and frame.source_pts == pytest.approx(0.0)


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not a video" * 100, bytes(range(256)) * 64],
    ids=["empty", "text", "bin"],
)
def test_corrupt_video_file_is_open_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(SourceOpenError) as info:
        open_source(str(path))
    assert str(path) in str(info.value)


def test_truncated_video_still_plays_what_is_there(tmp_path: Path, vtest: Path) -> None:
    path = tmp_path / "truncated.avi"
    path.write_bytes(vtest.read_bytes()[:400_000])
    with FileSource(path) as source:
        count = 0
        while source.read() is not None:
            count += 1
    assert 0 < count < VTEST_FRAMES


# -- ImageFolderSource ------------------------------------------------------------------------


@pytest.fixture()
def image_folder(tmp_path: Path, vtest_frames: list[np.ndarray]) -> Path:
    """frame_1.png .. frame_5.png from vtest.avi, plus a corrupt frame_3b.jpg between."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, image in enumerate(vtest_frames, start=1):
        assert cv2.imwrite(str(folder / f"frame_{i}.png"), image)
    (folder / "frame_3b.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (folder / "notes.txt").write_text("not an image, ignored")
    return folder


def test_folder_source_reads_images_and_skips_corrupt(
    image_folder: Path, vtest_frames: list[np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), open_source(str(image_folder), fps=5) as source:
        assert isinstance(source, ImageFolderSource)
        assert source.size == (768, 576)
        assert source.nominal_fps == 5
        names = [p.name for p in source.files]
        assert names == [
            "frame_1.png",
            "frame_2.png",
            "frame_3.png",
            "frame_3b.jpg",
            "frame_4.png",
            "frame_5.png",
        ]
        frames = []
        while (frame := source.read()) is not None:
            frames.append(frame)
        assert source.skipped == 1
        assert source.stats.frames_read == 5
        assert source.stats.frames_dropped == 1, "the skipped image is a gap in the index"
    assert [f.meta["path"] for f in frames] == [f"frame_{i}.png" for i in range(1, 6)]
    assert [f.index for f in frames] == [0, 1, 2, 4, 5]
    assert frames[4].source_pts == pytest.approx(1.0)  # position 5 at 5 fps
    for frame, original in zip(frames, vtest_frames, strict=True):
        assert np.array_equal(frame.image, original), "PNG is lossless"
    assert any("frame_3b.jpg" in r.getMessage() for r in caplog.records)


def test_folder_source_loop_and_pattern(image_folder: Path) -> None:
    with ImageFolderSource(image_folder, loop=True) as source:
        frames = [source.read() for _ in range(12)]
        assert source.skipped == 2, "skipped once per pass"
    assert all(f is not None for f in frames)
    assert [f.meta["path"] for f in frames if f is not None][5] == "frame_1.png"
    # A glob in the path selects files: no jpg, so nothing to skip.
    with open_source(str(image_folder / "*.png")) as source:
        assert isinstance(source, ImageFolderSource)
        assert len(source.files) == 5
        while source.read() is not None:
            pass
        assert source.skipped == 0


def test_folder_natural_order(tmp_path: Path) -> None:
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((8, 8, 3), i, np.uint8))
    with ImageFolderSource(tmp_path) as source:
        values = [int(f.image[0, 0, 0]) for f in iter(source.read, None)]
    assert values == [1, 2, 10]


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound, match="missing_dir"):
        ImageFolderSource(tmp_path / "missing_dir").open()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceNotFound, match=r"no images.*empty"):
        open_source(str(empty))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"nope")
    with pytest.raises(SourceOpenError, match="none of the 1 images"):
        open_source(str(broken))


# -- TestPatternSource ------------------------------------------------------------------------


def test_pattern_is_deterministic_and_moves() -> None:
    with open_source("test://pattern?width=320&height=240&fps=15") as a:
        assert isinstance(a, TestPatternSource)
        assert a.size == (320, 240) and a.nominal_fps == 15
        frames_a = [a.read() for _ in range(5)]
    with TestPatternSource(width=320, height=240, fps=15) as b:
        frames_b = [b.read() for _ in range(5)]
    for i, (fa, fb) in enumerate(zip(frames_a, frames_b, strict=True)):
        assert fa is not None and fb is not None
        assert fa.image.shape == (240, 320, 3)
        assert np.array_equal(fa.image, fb.image), "same index, same pixels"
        assert np.array_equal(fa.image, render_pattern(i, 320, 240))
        assert fa.source_pts == pytest.approx(i / 15)
        assert read_pattern_code(fa.image) == (i, 0)
    first, second = frames_a[0], frames_a[1]
    assert first is not None and second is not None
    changed = np.any(first.image != second.image, axis=2)
    assert changed.sum() > 500, "the square and the counter move"


def test_pattern_code_survives_jpeg() -> None:
    image = render_pattern(123_456, 640, 480, stamp_ms=3_000_000_123)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 40])
    assert ok
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    assert read_pattern_code(decoded) == (123_456, 3_000_000_123)


def test_pattern_limit_and_options() -> None:
    with open_source("test://", limit=3) as source:
        assert source.size == (640, 480)
        assert [f.index for f in iter(source.read, None)] == [0, 1, 2]
    with pytest.raises(SourceOpenError, match="choose one of"):
        open_source("test://plaid")


def test_testsrc2_through_pyav() -> None:
    with open_source("test://testsrc2", width=320, height=240, fps=25) as source:
        frames = [source.read() for _ in range(3)]
    with TestPatternSource(width=320, height=240, fps=25, pattern="testsrc2") as again:
        repeat = again.read()
    assert all(f is not None and f.image.shape == (240, 320, 3) for f in frames)
    assert frames[0] is not None and frames[1] is not None and repeat is not None
    assert not np.array_equal(frames[0].image, frames[1].image)
    assert np.array_equal(frames[0].image, repeat.image)


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "error", "words"),
    [
        ("/nonexistent/dir/clip.mp4", SourceNotFound, ["/nonexistent/dir/clip.mp4"]),
        ("file:///nonexistent/clip.mp4", SourceNotFound, ["/nonexistent/clip.mp4"]),
        ("/dev/video99", SourceNotFound, ["/dev/video99"]),
        ("v4l2:///dev/video99", SourceNotFound, ["/dev/video99"]),
        ("rtsp://127.0.0.1:1/nothing", SourceOpenError, ["127.0.0.1:1", "refused"]),
        ("gopher://host/x", SourceOpenError, ["gopher", "rtsp://", "file://", "test://"]),
        ("test://pattern?fps=fast", SourceOpenError, ["fps", "fast"]),
        ("test://pattern?colour=red", SourceOpenError, ["colour"]),
        ("", SourceOpenError, ["empty"]),
    ],
)
def test_errors_are_typed_clear_and_quick(
    uri: str, error: type[SourceError], words: list[str]
) -> None:
    started = time.monotonic()
    with pytest.raises(error) as info:
        open_source(uri)
    assert time.monotonic() - started < 3.0
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_v4l2_on_a_non_camera_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(SourceOpenError, match="not a video device"):
        V4L2Source(str(tmp_path)).open()
    with pytest.raises(SourceOpenError, match="/dev/null"):
        V4L2Source("/dev/null").open()
    with pytest.raises(SourceOpenError, match="width and height"):
        V4L2Source("/dev/video0", width=640)


def test_rtsp_credentials_never_shown() -> None:
    with pytest.raises(SourceOpenError) as info:
        open_source("rtsp://admin:hunter2@127.0.0.1:1/stream", reconnect=False)
    assert "hunter2" not in str(info.value)
    assert "127.0.0.1:1/stream" in str(info.value)


# -- factory ----------------------------------------------------------------------------------


def test_factory_dispatch(tmp_path: Path, vtest: Path) -> None:
    rtsp = create_source("rtsp://127.0.0.1:8554/cam", read_timeout_s=1, initial_backoff_s=0.1)
    assert isinstance(rtsp, ReconnectingSource) and isinstance(rtsp.inner, RtspSource)
    assert not rtsp.is_open
    assert isinstance(create_source("rtsp://h/cam", reconnect=False), RtspSource)
    assert isinstance(create_source("/dev/video0"), V4L2Source)
    assert isinstance(create_source(str(vtest), loop=True, fps=3), FileSource)
    assert isinstance(create_source(str(tmp_path)), ImageFolderSource)
    assert {"file", "rtsp", "test", "v4l2"} <= set(supported_schemes())


def test_register_scheme_for_future_sources() -> None:
    seen: dict[str, object] = {}

    def build(uri: str, options: dict[str, object]) -> VideoSource:
        seen["uri"], seen["room"] = uri, options.pop("room", None)
        return TestPatternSource(width=32, height=32, limit=1)

    register_scheme("demo", build)
    try:
        source = create_source("demo://0.0.0.0:8080?room=lobby")
        assert isinstance(source, TestPatternSource)
        assert seen == {"uri": "demo://0.0.0.0:8080", "room": "lobby"}
    finally:
        factory_module._BUILDERS.pop("demo")


# -- ReconnectingSource (scripted source, no network) -----------------------------------------


class FlakySource(VideoSource):
    """Delivers ``per_session`` frames per connection then drops; refuses some opens."""

    def __init__(self, per_session: int, refuse_opens: int) -> None:
        super().__init__()
        self.per_session = per_session
        self.refuse_opens = refuse_opens
        self.opens = 0
        self.index = 0

    @property
    def description(self) -> str:
        return "flaky test source"

    @property
    def is_live(self) -> bool:
        return True

    def _open(self) -> None:
        self.opens += 1
        if 1 < self.opens <= 1 + self.refuse_opens:
            raise SourceOpenError("flaky: connection refused")
        self.index = 0

    def _read(self) -> Frame | None:
        if self.index >= self.per_session:
            raise SourceDisconnected("flaky: dropped")
        self.index += 1
        return Frame(np.zeros((2, 2, 3), np.uint8), time.time_ns(), index=self.index - 1)

    def _close(self) -> None:
        pass


def test_reconnecting_source_recovers_with_backoff() -> None:
    inner = FlakySource(per_session=3, refuse_opens=2)
    source = ReconnectingSource(inner, initial_backoff_s=0.01, max_backoff_s=0.05, jitter=0.5)
    with source:
        assert source.state == "connected"
        frames = [source.read() for _ in range(9)]
        assert source.state == "connected"
    assert all(f is not None for f in frames)
    assert [f.index for f in frames if f is not None] == list(range(9)), "continuous index"
    assert source.reconnects == 2
    assert source.reconnect_attempts == 4, "two refused, two accepted"
    assert source.stats.reconnects == 2
    assert source.stats.frames_read == 9
    assert source.last_error is not None and "flaky" in source.last_error
    assert source.state == "closed"


def test_reconnecting_source_first_open_fails_loudly() -> None:
    source = ReconnectingSource(RtspSource("rtsp://127.0.0.1:1/x"))
    with pytest.raises(SourceOpenError, match="refused"):
        source.open()


def test_close_from_another_thread_interrupts_backoff() -> None:
    inner = FlakySource(per_session=1, refuse_opens=1000)
    source = ReconnectingSource(inner, initial_backoff_s=30.0, max_backoff_s=60.0)
    source.open()
    assert source.read() is not None
    threading.Timer(0.2, source.close).start()
    started = time.monotonic()
    assert source.read() is None
    assert time.monotonic() - started < 2.0
    assert source.state == "closed"


def test_stop_event_ends_reconnecting() -> None:
    stop = threading.Event()
    inner = FlakySource(per_session=1, refuse_opens=1000)
    source = ReconnectingSource(inner, initial_backoff_s=30.0, max_backoff_s=60.0, stop_event=stop)
    with source:
        assert source.read() is not None
        threading.Timer(0.2, stop.set).start()
        started = time.monotonic()
        assert source.read() is None
        assert time.monotonic() - started < 2.0
        assert source.state == "reconnecting"


def test_retry_initial_waits_for_the_source() -> None:
    inner = FlakySource(per_session=2, refuse_opens=0)
    inner.opens = 1  # make the very first open() one of the refused ones
    inner.refuse_opens = 1
    source = ReconnectingSource(inner, initial_backoff_s=0.01, retry_initial=True)
    with source:
        assert source.state == "reconnecting"
        frame = source.read()
        assert frame is not None and frame.index == 0
        assert source.reconnects == 0, "the first connection is not a reconnection"
