"""Sliding-window clip buffers for clip-based action recognition over a frame stream.

A clip is ``clip_len`` (T) preprocessed frames, taken every ``frame_step``-th input frame; once
the window is full a clip is emitted every ``stride`` sampled frames. Sample positions count
sampled frames from the first one after a reset; window ``k`` holds positions
``k * stride .. k * stride + T - 1`` and is emitted when its last position is pushed. With
``stride > T`` the positions between windows belong to no clip, and :meth:`ClipBuffer.want`
says so, so that callers skip decoding/cropping/resizing frames nobody will look at.

Frames live in one preallocated (T, C, H, W) float32 ring; a push copies the frame into its
slot and allocates nothing else. The only allocation is the copy-out of a complete clip,
which the caller owns and may keep (e.g. while inference runs on another thread).

Pure numpy: no ROS, no torch.
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

__all__ = ["Clip", "ClipBuffer", "TrackClipBuffers"]


@dataclass(frozen=True, eq=False)
class Clip:
    """One complete window. ``frames`` is (T, C, H, W) float32, oldest first, owned by the
    caller; ``index`` is the window number since the buffer's last reset; ``key`` is the track
    id for per-track buffers and None otherwise."""

    frames: np.ndarray
    first_stamp_ns: int
    last_stamp_ns: int
    index: int
    key: Hashable | None = None


def _positive_int(name: str, value: object) -> int:
    # operator.index accepts numpy integers (ROS parameters, config files) but not floats or
    # strings; bool is an int subclass that is never meant here.
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}") from None
    if number < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {number}")
    return number


class ClipBuffer:
    """Ring buffer of T preprocessed frames that emits a :class:`Clip` per completed window.

    Usage per input frame ``i`` (monotonic, e.g. the source's frame counter)::

        if buf.want(i):
            clip = buf.push(preprocess(frame), stamp_ns)
            if clip is not None:
                infer(clip)

    ``want`` is optional: a caller that never calls it has every pushed frame taken as the next
    sample position (it then does its own decimation). A window is emitted only when all of
    its T positions were pushed: a wanted frame that was not pushed (a decode error, a
    dropped frame) leaves a gap, and filling restarts after it rather than emitting a clip
    with a stale slot in it.
    """

    def __init__(self, clip_len: int, frame_step: int = 1, stride: int = 8) -> None:
        self._storage: np.ndarray | None = None
        self._stamps: np.ndarray | None = None
        self.configure(clip_len=clip_len, frame_step=frame_step, stride=stride)

    # -- configuration -----------------------------------------------------------------------

    @property
    def clip_len(self) -> int:
        return self._clip_len

    @property
    def frame_step(self) -> int:
        return self._frame_step

    @property
    def stride(self) -> int:
        return self._stride

    def configure(
        self,
        clip_len: int | None = None,
        frame_step: int | None = None,
        stride: int | None = None,
    ) -> None:
        """Change any of the parameters (None keeps the current value) and reset.

        Validates all values before changing any, so a ValueError leaves the buffer as it was.
        """
        new_len = _positive_int("clip_len", self._clip_len if clip_len is None else clip_len)
        new_step = _positive_int(
            "frame_step", self._frame_step if frame_step is None else frame_step
        )
        new_stride = _positive_int("stride", self._stride if stride is None else stride)
        if self._storage is not None and new_len != self._clip_len:
            self._storage = None  # reallocated at the next push, when the frame shape is known
            self._stamps = None
        self._clip_len, self._frame_step, self._stride = new_len, new_step, new_stride
        self.reset()

    def reset(self) -> None:
        """Forget all frames and the sampling phase; keeps the storage for reuse."""
        self._origin: int | None = None  # frame index of sample position 0
        self._last_index: int | None = None  # last frame index given to want()
        self._pending: int | None = None  # position announced by want() for the next push
        self._next_pos = 0  # position of the next push when want() was not called
        self._last_pos = -1  # position of the last stored frame
        self._run = 0  # consecutive positions stored, ending at _last_pos
        self._windows = 0  # clips emitted since reset

    # -- state -------------------------------------------------------------------------------

    @property
    def filled(self) -> int:
        """Frames of the next window to complete already buffered (0..T-1)."""
        last, length = self._last_pos, self._clip_len
        if self._run == 0:
            return 0
        # The next window is the first one ending after the last stored position.
        window = (last - length + 1) // self._stride + 1 if last >= length - 1 else 0
        return max(0, min(self._run, last - window * self._stride + 1))

    @property
    def clips_emitted(self) -> int:
        return self._windows

    @property
    def frame_shape(self) -> tuple[int, ...] | None:
        """(C, H, W) of the buffered frames, None before the first push."""
        return None if self._storage is None else tuple(self._storage.shape[1:])

    # -- streaming ---------------------------------------------------------------------------

    def _in_window(self, pos: int) -> bool:
        # Window k covers k*stride .. k*stride+T-1, so a position is in some window iff its
        # offset from the last window start is below T (always true when stride <= T).
        return pos % self._stride < self._clip_len

    def want(self, frame_index: int) -> bool:
        """Whether input frame ``frame_index`` will be used, i.e. should be preprocessed and
        pushed. Call once per input frame with increasing indices; the first call after a
        reset fixes the sampling phase. An index that goes backwards (the source restarted)
        resets the buffer, since a clip must not mix the two streams."""
        index = operator.index(frame_index)
        if self._last_index is not None and index < self._last_index:
            self.reset()
        self._last_index = index
        if self._origin is None:
            self._origin = index
        offset = index - self._origin
        self._pending = None
        if offset % self._frame_step:
            return False
        pos = offset // self._frame_step
        if not self._in_window(pos):
            return False
        self._pending = pos
        return True

    def push(self, frame: np.ndarray, stamp_ns: int) -> Clip | None:
        """Store one sampled (C, H, W) frame; return the clip if this frame completes a window.

        A frame of a different shape than the buffered ones restarts the window with storage
        for the new shape (e.g. after the model input size changed).
        """
        if frame.ndim != 3:
            raise ValueError(f"frame must be (C, H, W), got shape {frame.shape}")
        if self._pending is not None:
            pos, self._pending = self._pending, None
        else:
            pos = self._next_pos
        self._next_pos = pos + 1
        if not self._in_window(pos):
            return None  # between windows (stride > T): nothing will read this frame

        storage = self._storage
        if storage is None or storage.shape[1:] != frame.shape:
            storage = self._storage = np.empty((self._clip_len, *frame.shape), np.float32)
            self._stamps = np.empty(self._clip_len, np.int64)
            self._run = 0
        stamps = self._stamps
        assert stamps is not None

        self._run = self._run + 1 if pos == self._last_pos + 1 else 1
        self._last_pos = pos
        slot = pos % self._clip_len
        storage[slot] = frame  # casts into the preallocated slot, no temporary
        stamps[slot] = stamp_ns

        start = pos - self._clip_len + 1
        if self._run < self._clip_len or start % self._stride:
            return None
        # The oldest frame sits in the slot after the newest; copy out in time order.
        oldest = (slot + 1) % self._clip_len
        if oldest == 0:
            frames = storage.copy()
        else:
            frames = np.concatenate((storage[oldest:], storage[:oldest]))
        self._windows += 1
        return Clip(
            frames=frames,
            first_stamp_ns=int(stamps[oldest]),
            last_stamp_ns=int(stamps[slot]),
            index=start // self._stride,
        )


class TrackClipBuffers:
    """One :class:`ClipBuffer` per track id, for action recognition on crops of one object.

    Sampling counts the track's own observations (every ``frame_step``-th crop of the track
    is taken), so a detection missed for a frame or two delays the clip instead of breaking
    it. Tracks not pushed for more than ``max_idle_ns`` (by the stamps pushed) are evicted,
    and when a new track would exceed ``max_tracks`` the least recently pushed one is.
    Evicted buffers are kept for reuse, so track churn does not allocate new storage.

    Memory: up to ``max_tracks`` rings of T*C*H*W float32 (32 x 16x3x112x112 = 77 MB).
    """

    def __init__(
        self,
        clip_len: int,
        frame_step: int = 1,
        stride: int = 8,
        max_tracks: int = 32,
        max_idle_ns: float = 2e9,
    ) -> None:
        self._max_tracks = _positive_int("max_tracks", max_tracks)
        if not max_idle_ns > 0:
            raise ValueError(f"max_idle_ns must be > 0, got {max_idle_ns!r}")
        self._max_idle_ns = max_idle_ns
        # Validates the clip parameters once, up front, instead of at the first track.
        ClipBuffer(clip_len, frame_step, stride)
        self._params = (clip_len, frame_step, stride)
        # Least recently pushed first: eviction only ever looks at the front.
        self._buffers: OrderedDict[Hashable, ClipBuffer] = OrderedDict()
        # None: created by want() and not pushed yet, so no stamp is known.
        self._last_seen: dict[Hashable, int | None] = {}
        self._observations: dict[Hashable, int] = {}
        self._spare: list[ClipBuffer] = []
        self.evicted_idle = 0
        self.evicted_overflow = 0

    @property
    def evictions(self) -> int:
        return self.evicted_idle + self.evicted_overflow

    @property
    def tracks(self) -> tuple[Hashable, ...]:
        """Buffered track ids, least recently pushed first."""
        return tuple(self._buffers)

    @property
    def clip_len(self) -> int:
        return self._params[0]

    @property
    def frame_step(self) -> int:
        return self._params[1]

    @property
    def stride(self) -> int:
        return self._params[2]

    def configure(
        self,
        clip_len: int | None = None,
        frame_step: int | None = None,
        stride: int | None = None,
    ) -> None:
        """Change the clip parameters for all tracks; drops all tracks."""
        old = self._params
        params = (
            old[0] if clip_len is None else clip_len,
            old[1] if frame_step is None else frame_step,
            old[2] if stride is None else stride,
        )
        ClipBuffer(*params)  # validate before dropping anything
        self._params = params
        self.reset()
        for buf in self._spare:
            buf.configure(*params)

    def reset(self) -> None:
        """Drop all tracks (their storage is kept for reuse); eviction counters stay."""
        while self._buffers:
            self._release(next(iter(self._buffers)))

    def drop(self, track_id: Hashable) -> bool:
        """Forget one track (e.g. the tracker reported it lost); False if it was not there."""
        if track_id not in self._buffers:
            return False
        self._release(track_id)
        return True

    def _release(self, track_id: Hashable) -> None:
        buf = self._buffers.pop(track_id)
        del self._last_seen[track_id]
        del self._observations[track_id]
        buf.reset()
        if len(self._spare) < self._max_tracks:
            self._spare.append(buf)

    def evict_idle(self, now_ns: int) -> int:
        """Evict the tracks not pushed for more than ``max_idle_ns`` before ``now_ns``;
        returns how many. :meth:`push` calls it; a node may also call it from a timer so
        that buffers of vanished objects do not wait for the next push."""
        evicted = 0
        while self._buffers:
            oldest = next(iter(self._buffers))
            seen = self._last_seen[oldest]
            if seen is None:
                # Wanted but never pushed: start its idle clock now, among the newest.
                self._last_seen[oldest] = now_ns
                self._buffers.move_to_end(oldest)
                continue
            if now_ns - seen <= self._max_idle_ns:
                break
            self._release(oldest)
            evicted += 1
        self.evicted_idle += evicted
        return evicted

    def _buffer(self, track_id: Hashable) -> ClipBuffer:
        buf = self._buffers.get(track_id)
        if buf is not None:
            return buf
        buf = self._spare.pop() if self._spare else ClipBuffer(*self._params)
        while len(self._buffers) >= self._max_tracks:
            self._release(next(iter(self._buffers)))
            self.evicted_overflow += 1
        self._buffers[track_id] = buf
        self._observations[track_id] = 0
        self._last_seen[track_id] = None
        return buf

    def want(self, track_id: Hashable) -> bool:
        """Whether this observation of ``track_id`` will be used; call once per observation
        of the track, before cropping, and push the crop only when True."""
        buf = self._buffer(track_id)
        index = self._observations[track_id]
        self._observations[track_id] = index + 1
        return buf.want(index)

    def push(self, track_id: Hashable, crop: np.ndarray, stamp_ns: int) -> Clip | None:
        """Store a preprocessed (C, H, W) crop of ``track_id``; return its clip when a window
        completes (``Clip.key`` is the track id). Without :meth:`want`, every pushed crop is
        the track's next sample."""
        self.evict_idle(stamp_ns)
        buf = self._buffer(track_id)
        self._buffers.move_to_end(track_id)
        self._last_seen[track_id] = stamp_ns
        clip = buf.push(crop, stamp_ns)
        if clip is None:
            return None
        return Clip(clip.frames, clip.first_stamp_ns, clip.last_stamp_ns, clip.index, track_id)
