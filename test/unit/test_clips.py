"""Sliding-window clip buffers: window timing, ring order, allocation, eviction, validation.

Frames are filled with their input frame index, so a clip's content says exactly which input
frames went into it and in which order.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from edge_vision.core.clips import Clip, ClipBuffer, TrackClipBuffers

SHAPE = (3, 4, 5)


def frame(value: float) -> np.ndarray:
    return np.full(SHAPE, value, np.float32)


def stamp(i: int) -> int:
    # 30 fps with an offset, so that stamps are not equal to indices by accident.
    return 1_000_000_000 + i * 33_333_333


def content(clip: Clip) -> list[int]:
    """The input frame index of each frame of a clip (every pixel must agree)."""
    values = []
    for f in clip.frames:
        assert np.all(f == f.flat[0]), "a frame's pixels disagree: slots were mixed"
        values.append(int(f.flat[0]))
    return values


def run_stream(buf: ClipBuffer, n: int) -> list[tuple[int, Clip]]:
    """Feed input frames 0..n-1 the way a node does; return (input index, clip) per clip."""
    out = []
    for i in range(n):
        if buf.want(i):
            clip = buf.push(frame(i), stamp(i))
            if clip is not None:
                out.append((i, clip))
    return out


def test_window_timing_t16_stride8_step2() -> None:
    probe = ClipBuffer(16, frame_step=2, stride=8)
    assert [i for i in range(12) if probe.want(i)] == [0, 2, 4, 6, 8, 10]
    buf = ClipBuffer(16, frame_step=2, stride=8)
    clips = run_stream(buf, 100)
    # Samples are inputs 0, 2, 4, ...; window k holds samples 8k..8k+15, i.e. inputs
    # 16k, 16k+2, ..., 16k+30, and completes at input 16k+30.
    assert [i for i, _ in clips] == [30, 46, 62, 78, 94]
    for k, (i, clip) in enumerate(clips):
        expected = list(range(16 * k, 16 * k + 31, 2))
        assert content(clip) == expected
        assert clip.index == k
        assert clip.key is None
        assert clip.first_stamp_ns == stamp(16 * k)
        assert clip.last_stamp_ns == stamp(i)
        assert clip.frames.shape == (16, *SHAPE)
        assert clip.frames.dtype == np.float32


def test_want_skips_off_grid_and_between_windows() -> None:
    buf = ClipBuffer(4, frame_step=3, stride=10)
    wanted = [i for i in range(5, 5 + 3 * 25) if buf.want(i)]
    # Phase starts at 5; samples every 3rd input; of each 10 samples only the first 4 are in
    # a window, so the other 6 are not wanted either.
    samples = [5 + 3 * s for s in range(25) if s % 10 < 4]
    assert wanted == samples


def test_stride_larger_than_clip_len() -> None:
    buf = ClipBuffer(4, frame_step=1, stride=10)
    clips = run_stream(buf, 32)
    assert [content(c) for _, c in clips] == [[0, 1, 2, 3], [10, 11, 12, 13], [20, 21, 22, 23]]
    assert [c.index for _, c in clips] == [0, 1, 2]
    assert buf.filled == 2  # inputs 30 and 31 of the next window


def test_push_without_want_takes_every_frame_as_next_sample() -> None:
    buf = ClipBuffer(3, stride=1)
    got = [buf.push(frame(i), stamp(i)) for i in range(6)]
    assert got[:2] == [None, None]
    assert [content(c) for c in got[2:] if c is not None] == [
        [0, 1, 2],
        [1, 2, 3],
        [2, 3, 4],
        [3, 4, 5],
    ]


@pytest.mark.parametrize(("clip_len", "stride"), [(5, 1), (5, 2), (5, 3), (4, 4), (7, 5)])
def test_ring_wraps_in_order(clip_len: int, stride: int) -> None:
    # Many times around the ring, at every wrap offset: each clip is exactly the last T
    # inputs in time order, and clips come exactly every `stride` frames.
    buf = ClipBuffer(clip_len, stride=stride)
    clips = run_stream(buf, 10 * clip_len * stride + 3)
    assert len(clips) == (10 * clip_len * stride + 3 - clip_len) // stride + 1
    for k, (i, clip) in enumerate(clips):
        assert i == clip_len - 1 + k * stride
        assert content(clip) == list(range(i - clip_len + 1, i + 1))
        assert clip.first_stamp_ns == stamp(i - clip_len + 1)
        assert clip.last_stamp_ns == stamp(i)


def test_clip_is_a_copy_the_caller_may_keep() -> None:
    buf = ClipBuffer(2, stride=1)
    buf.push(frame(0), 0)
    first = buf.push(frame(1), 1)
    assert first is not None
    for i in range(2, 10):
        buf.push(frame(i), i)
    assert content(first) == [0, 1]
    first.frames[:] = -1  # the caller scribbling on its clip must not reach the ring
    clip = buf.push(frame(10), 10)
    assert clip is not None and content(clip) == [9, 10]


def test_gap_restarts_the_window() -> None:
    # A wanted frame that is never pushed (decode error) must not leave a stale slot in a clip.
    buf = ClipBuffer(4, stride=1)
    clips = []
    for i in range(12):
        if buf.want(i) and i != 5:
            clip = buf.push(frame(i), stamp(i))
            if clip is not None:
                clips.append(content(clip))
    assert clips == [[0, 1, 2, 3], [1, 2, 3, 4], [6, 7, 8, 9], [7, 8, 9, 10], [8, 9, 10, 11]]


def test_index_going_backwards_resets() -> None:
    buf = ClipBuffer(3, stride=3)
    run_stream(buf, 5)
    assert buf.filled == 2  # inputs 3, 4 of the second window
    assert buf.want(0)  # the source restarted
    assert buf.filled == 0
    assert buf.clips_emitted == 0


def test_reset_and_configure() -> None:
    buf = ClipBuffer(4, stride=2)
    run_stream(buf, 3)
    assert buf.filled == 3
    buf.reset()
    assert buf.filled == 0
    assert buf.want(100)  # new phase
    buf.configure(clip_len=2, stride=1)
    assert (buf.clip_len, buf.frame_step, buf.stride) == (2, 1, 1)
    clips = run_stream(buf, 4)
    assert [content(c) for _, c in clips] == [[0, 1], [1, 2], [2, 3]]
    buf.configure(frame_step=2)
    assert (buf.clip_len, buf.frame_step, buf.stride) == (2, 2, 1)
    assert buf.filled == 0


def test_frame_shape_change_restarts_with_new_storage() -> None:
    buf = ClipBuffer(2, stride=1)
    buf.push(frame(0), 0)
    assert buf.frame_shape == SHAPE
    assert buf.push(np.zeros((3, 8, 8), np.float32), 1) is None  # not mixed with the old one
    clip = buf.push(np.ones((3, 8, 8), np.float32), 2)
    assert clip is not None and clip.frames.shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="C, H, W"):
        buf.push(np.zeros((8, 8), np.float32), 3)


def test_uint8_frames_are_stored_as_float32() -> None:
    buf = ClipBuffer(1)
    clip = buf.push(np.full(SHAPE, 200, np.uint8), 5)
    assert clip is not None
    assert clip.frames.dtype == np.float32 and float(clip.frames.max()) == 200.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"clip_len": 0},
        {"clip_len": -3},
        {"clip_len": 16, "stride": 0},
        {"clip_len": 16, "frame_step": 0},
        {"clip_len": 2.5},
        {"clip_len": "16"},
        {"clip_len": True},
    ],
)
def test_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ClipBuffer(**kwargs)
    with pytest.raises(ValueError):
        TrackClipBuffers(**{"frame_step": 1, "stride": 1, **kwargs})


def test_configure_validates_before_changing() -> None:
    buf = ClipBuffer(4, frame_step=2, stride=3)
    with pytest.raises(ValueError, match="stride"):
        buf.configure(clip_len=8, stride=0)
    assert (buf.clip_len, buf.frame_step, buf.stride) == (4, 2, 3)
    with pytest.raises(ValueError, match="max_tracks"):
        TrackClipBuffers(4, 1, 1, max_tracks=0)
    with pytest.raises(ValueError, match="max_idle_ns"):
        TrackClipBuffers(4, 1, 1, max_idle_ns=0)


def test_numpy_integers_accepted() -> None:
    buf = ClipBuffer(np.int64(4), frame_step=np.int32(2), stride=np.uint8(3))
    assert (buf.clip_len, buf.frame_step, buf.stride) == (4, 2, 3)


def test_no_allocation_growth() -> None:
    """Pushes that complete no window allocate (almost) nothing; a completing push allocates
    one clip; nothing accumulates over many windows. numpy reports its buffers to tracemalloc,
    so an implementation that rolls or stacks the ring per frame fails here."""
    shape = (3, 32, 32)
    clip_bytes = 16 * int(np.prod(shape)) * 4
    buf = ClipBuffer(16, frame_step=1, stride=8)
    frames = [np.full(shape, i, np.float32) for i in range(4)]
    for i in range(40):  # warm up: storage allocated, first clips out
        buf.push(frames[i % 4], i)

    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        plain: list[int] = []
        with_clip: list[int] = []
        for i in range(40, 1040):
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            clip = buf.push(frames[i % 4], i)
            _, peak = tracemalloc.get_traced_memory()
            (plain if clip is None else with_clip).append(peak - before)
            del clip
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(with_clip) == 125
    # tracemalloc counts the whole process: in a full test run other threads (a ROS client's
    # spin thread) allocate now and then, so look at the typical push, not the worst one.
    # A frame is 12 KiB: a per-push copy of anything frame-sized would show up.
    assert np.percentile(plain, 90) < 2048, sorted(plain)[-10:]
    typical_clip = np.median(with_clip)
    assert clip_bytes <= typical_clip < clip_bytes + 4096, (typical_clip, clip_bytes)
    assert end - base < 64 * 1024, end - base


# -- per-track buffers ---------------------------------------------------------------------


def test_tracks_get_separate_windows_keyed_by_id() -> None:
    tracks = TrackClipBuffers(3, frame_step=1, stride=3)
    clips = []
    for i in range(9):
        for tid, offset in (("a", 0), (7, 1000)):
            clip = tracks.push(tid, frame(offset + i), stamp(i))
            if clip is not None:
                clips.append((clip.key, clip.index, content(clip)))
    assert clips == [
        ("a", 0, [0, 1, 2]),
        (7, 0, [1000, 1001, 1002]),
        ("a", 1, [3, 4, 5]),
        (7, 1, [1003, 1004, 1005]),
        ("a", 2, [6, 7, 8]),
        (7, 2, [1006, 1007, 1008]),
    ]
    assert set(tracks.tracks) == {"a", 7}


def test_track_sampling_counts_the_tracks_own_observations() -> None:
    # Track "b" is seen only on odd frames; with frame_step=2 it still gets every 2nd of
    # its own observations, not every 2nd input frame.
    tracks = TrackClipBuffers(2, frame_step=2, stride=2)
    clips = []
    for i in range(1, 17, 2):
        if tracks.want("b"):
            clip = tracks.push("b", frame(i), stamp(i))
            if clip is not None:
                clips.append(content(clip))
    assert clips == [[1, 5], [9, 13]]


def test_idle_eviction() -> None:
    tracks = TrackClipBuffers(4, 1, 1, max_idle_ns=1e9)
    tracks.push(1, frame(0), 0)
    tracks.push(2, frame(0), 500_000_000)
    tracks.push(2, frame(0), 1_000_000_000)  # 1 s after track 1: not yet idle (> is needed)
    assert tracks.tracks == (1, 2)
    tracks.push(2, frame(0), 1_000_000_001)
    assert tracks.tracks == (2,)
    assert (tracks.evicted_idle, tracks.evicted_overflow, tracks.evictions) == (1, 0, 1)
    assert tracks.evict_idle(3_000_000_000) == 1
    assert tracks.tracks == ()
    assert tracks.evictions == 2


def test_idle_track_restarts_its_window() -> None:
    tracks = TrackClipBuffers(3, 1, 1, max_idle_ns=1e9)
    tracks.push("x", frame(0), 0)
    tracks.push("x", frame(1), 1)
    # Back after 5 s: the two old frames must not be joined with the new one.
    assert tracks.push("x", frame(2), 5_000_000_000) is None
    assert tracks.evicted_idle == 1


def test_track_wanted_after_a_quiet_spell_is_not_evicted_as_idle() -> None:
    # want() creates the track before any stamp is known; the push right after, 10 s after
    # the last push of anything, must not count it as idle.
    tracks = TrackClipBuffers(2, 1, 1, max_idle_ns=1e9)
    tracks.push("old", frame(0), 0)
    assert tracks.want("new")
    assert tracks.push("new", frame(1), 10_000_000_000) is None
    assert tracks.tracks == ("new",)
    assert tracks.evicted_idle == 1  # "old" only
    assert tracks.want("new")
    clip = tracks.push("new", frame(2), 10_100_000_000)
    assert clip is not None and content(clip) == [1, 2]


def test_wanted_never_pushed_track_is_evicted_eventually() -> None:
    tracks = TrackClipBuffers(2, 1, 1, max_idle_ns=1e9)
    tracks.want("ghost")
    assert tracks.tracks == ("ghost",)
    tracks.push("a", frame(0), 0)  # the ghost's idle clock starts at this push
    assert tracks.tracks == ("ghost", "a")
    assert tracks.evict_idle(1_000_000_000) == 0
    assert tracks.evict_idle(1_000_000_001) == 2
    assert tracks.tracks == ()


def test_overflow_evicts_least_recently_seen() -> None:
    tracks = TrackClipBuffers(4, 1, 1, max_tracks=3)
    for tid in (1, 2, 3):
        tracks.push(tid, frame(tid), tid)
    tracks.push(1, frame(1), 10)  # 1 is now the most recent; 2 is the least
    tracks.push(4, frame(4), 11)
    assert tracks.tracks == (3, 1, 4)
    assert (tracks.evicted_overflow, tracks.evicted_idle) == (1, 0)
    tracks.push(5, frame(5), 12)
    assert tracks.tracks == (1, 4, 5)
    assert tracks.evictions == 2


def test_evicted_storage_is_reused() -> None:
    tracks = TrackClipBuffers(2, 1, 1, max_tracks=2)
    for tid in range(50):
        tracks.push(tid, frame(tid), tid)
    rings = {id(buf._storage) for buf in [*tracks._buffers.values(), *tracks._spare]}
    assert len(rings) <= 3  # at most max_tracks + the one being handed over
    assert tracks.evicted_overflow == 48


def test_track_drop_reset_configure() -> None:
    tracks = TrackClipBuffers(2, 1, 1)
    tracks.push("a", frame(0), 0)
    tracks.push("b", frame(0), 0)
    assert tracks.drop("a") and not tracks.drop("a")
    assert tracks.tracks == ("b",)
    tracks.configure(clip_len=1)
    assert tracks.tracks == ()
    clip = tracks.push("c", frame(3), 1)
    assert clip is not None and clip.key == "c" and content(clip) == [3]
    with pytest.raises(ValueError):
        tracks.configure(stride=0)
    assert tracks.stride == 1 and tracks.tracks == ("c",)
    tracks.reset()
    assert tracks.tracks == ()
