"""The recorder without ROS: pre-event buffer, clip requests, writing, storage.

Threads: the caller pushes frames (:meth:`Recorder.push_frame`, never blocks: a full queue drops
the frame and counts it) and messages of other topics (:meth:`Recorder.push_message`); an
encoder thread encodes every frame once and keeps the packets in the ring
(:class:`~edge_vision.recording.prebuffer.PacketRing`); a writer thread remuxes clips to disk.
A slow disk therefore delays only the writer, never the subscription or the encoder.

Clock: the *source clock* is the header stamp of the newest frame received, extrapolated with
the monotonic clock since it arrived. A request made at source time T covers
``[T - pre_s, T + duration_s]``: the clip starts at the last keyframe at or before
``T - pre_s`` (so it has at least ``pre_s`` of pre-roll when the ring holds that much, and at
most ``pre_s + gop_s`` + one frame interval) and ends with the last frame stamped at or before
its end.

One clip at a time: any request while a clip is recording (whatever its event id) extends that
clip's end to ``T + duration_s``, as EDGEMATRIX's record action does, but never past the clip's
first frame + the ``max_duration_s`` of the request that started it. The reply gives the clip's
final path at once; the file appears there when the clip is complete.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import av
import numpy as np

from edge_vision.recording.bag import BagWriter, TypeRegistry
from edge_vision.recording.clip import Mp4ClipWriter
from edge_vision.recording.prebuffer import (
    EncodedPacket,
    EncoderSettings,
    H264Encoder,
    PacketRing,
)
from edge_vision.recording.storage import (
    SIDECAR_FORMAT,
    ClipPaths,
    ClipStorage,
    StorageError,
    render_name,
)

__all__ = ["RecordResult", "Recorder", "RecorderConfig"]

Log = Callable[[str, str], None]


@dataclass
class RecorderConfig:
    output_dir: str
    stream: str = "default"
    source_topic: str = ""
    pre_s: float = 5.0
    duration_s: float = 5.0
    max_duration_s: float = 60.0
    buffer_s: float = 10.0
    buffer_max_bytes: int = 256 << 20
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    file_pattern: str = "{stream}_{time:%Y%m%d-%H%M%S}_{reason}"
    quota_bytes: int = 0
    max_age_s: float = 0.0
    max_files: int = 0
    min_free_bytes: int = 0
    bag_storage: str = "mcap"
    fsync: bool = True
    frame_queue: int = 8
    stall_s: float = 1.0  # end a clip this long after its end when no frame comes any more


@dataclass
class RecordResult:
    success: bool
    message: str
    path: str = ""


@dataclass
class _BagMessage:
    topic: str
    msgtype: str
    data: bytes
    recv_ns: int


@dataclass
class _Clip:
    number: int
    paths: ClipPaths
    trigger_ns: int
    pre_s: float
    duration_s: float
    max_duration_s: float
    requested_start_ns: int
    end_ns: int
    cap_ns: int
    timeline: int
    first_recv_ns: int
    estimate_bytes: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    capped: bool = False
    ended_by: str = "window"
    failed: str | None = None
    # writer-thread state
    writer: Mp4ClipWriter | None = None
    bag: BagWriter | None = None
    last_check: float = 0.0


_END = object()


def _errno_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"disk full: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


class Recorder:
    def __init__(
        self,
        config: RecorderConfig,
        log: Log | None = None,
        registry: TypeRegistry | None = None,
    ) -> None:
        self.config = config
        self._log = log or (lambda level, text: None)
        self._registry = registry
        self.storage = self._make_storage(config)
        self.encoder = H264Encoder(config.encoder)
        self.ring = PacketRing(config.buffer_s, config.buffer_max_bytes)
        self._bag_ring: collections.deque[_BagMessage] = collections.deque()
        self._bag_ring_bytes = 0
        self._lock = threading.RLock()
        self._frames: queue.Queue = queue.Queue(maxsize=config.frame_queue)
        self._jobs: queue.Queue = queue.Queue()
        self._active: _Clip | None = None
        self._stopping = threading.Event()
        self._last_stamp_ns: int | None = None
        self._last_mono = 0.0
        self._busy = 0  # frames taken off the queue but not yet in the ring
        self._clip_number = 0
        self._encode_ms: collections.deque[float] = collections.deque(maxlen=300)
        self.frames_in = 0
        self.frames_dropped = 0
        self.encode_errors = 0
        self.clips_written = 0
        self.clips_failed = 0
        self.bytes_written = 0
        self.last_error = ""
        self.last_error_time = 0.0
        self.last_clip = ""
        self._failed_since_success = False
        self._last_failure = ""
        self.storage.ensure_root()
        self.storage.cleanup_leftovers()
        try:
            self.storage.enforce()
        except StorageError as exc:  # pragma: no cover - enforce() without reserve cannot raise
            self._log("warning", str(exc))
        self._encoder_thread = threading.Thread(
            target=self._encode_loop, name="recorder-encode", daemon=True
        )
        self._writer_thread = threading.Thread(
            target=self._write_loop, name="recorder-write", daemon=True
        )
        self._encoder_thread.start()
        self._writer_thread.start()

    def set_log(self, log: Log) -> None:
        """Where messages go from now on (e.g. stderr once ROS logging is shut down)."""
        self._log = log

    def _make_storage(self, config: RecorderConfig) -> ClipStorage:
        return ClipStorage(
            config.output_dir,
            quota_bytes=config.quota_bytes,
            max_age_s=config.max_age_s,
            max_files=config.max_files,
            min_free_bytes=config.min_free_bytes,
            log=lambda level, text: self._log(level, text),  # follows set_log()
        )

    # -- configuration --------------------------------------------------------------------------
    def reconfigure(self, **changes: Any) -> None:
        """Change settings while running. A new ``output_dir`` applies to the next clip (its
        leftovers are cleaned first); new ``encoder`` settings restart the encoder (the ring
        starts again empty and a clip in progress ends there)."""
        with self._lock:
            old = self.config
            self.config = dataclasses.replace(old, **changes)
            cfg = self.config
            self.ring.keep_s = cfg.buffer_s
            self.ring.max_bytes = cfg.buffer_max_bytes
            if cfg.output_dir != old.output_dir:
                storage = self._make_storage(cfg)
                storage.ensure_root()
                storage.cleanup_leftovers()
                self.storage = storage
            else:
                self.storage.quota_bytes = cfg.quota_bytes
                self.storage.max_age_s = cfg.max_age_s
                self.storage.max_files = cfg.max_files
                self.storage.min_free_bytes = cfg.min_free_bytes
            if cfg.encoder != old.encoder:
                self._jobs.put((None, "encoder", cfg.encoder))

    def enforce_retention(self) -> None:
        """Apply retention and quota now (from the writer thread, between clips' writes)."""
        self._jobs.put((None, "enforce", None))

    # -- input ----------------------------------------------------------------------------------
    def push_frame(
        self,
        image: np.ndarray,
        stamp_ns: int,
        pixel_format: str = "bgr24",
        recv_ns: int | None = None,
    ) -> bool:
        """Queue a frame for encoding; False when the encoder is behind and it was dropped."""
        if self._stopping.is_set():
            return False
        with self._lock:
            self._last_stamp_ns = stamp_ns
            self._last_mono = time.monotonic()
            self.frames_in += 1
        try:
            self._frames.put_nowait((image, stamp_ns, pixel_format, recv_ns or time.time_ns()))
        except queue.Full:
            with self._lock:
                self.frames_dropped += 1
            return False
        return True

    def push_message(self, topic: str, msgtype: str, data: bytes, recv_ns: int | None = None):
        """A serialised message of a bag topic: kept ``buffer_s`` for pre-roll, and written to
        the clip's bag while a clip records."""
        msg = _BagMessage(topic, msgtype, bytes(data), recv_ns or time.time_ns())
        with self._lock:
            self._bag_ring.append(msg)
            self._bag_ring_bytes += len(msg.data)
            keep_ns = round(self.config.buffer_s * 1e9) + 2 * 10**9  # + a GOP or two
            while self._bag_ring and (
                msg.recv_ns - self._bag_ring[0].recv_ns > keep_ns
                or self._bag_ring_bytes > self.config.buffer_max_bytes
            ):
                self._bag_ring_bytes -= len(self._bag_ring.popleft().data)
            clip = self._active
            if clip is not None and clip.failed is None:
                self._jobs.put((clip, "bag", [msg]))

    def source_clock_ns(self) -> int | None:
        with self._lock:
            if self._last_stamp_ns is None:
                return None
            return self._last_stamp_ns + int((time.monotonic() - self._last_mono) * 1e9)

    # -- requests -------------------------------------------------------------------------------
    def request(
        self,
        event_id: str = "",
        reason: str = "",
        pre_s: float | None = None,
        duration_s: float | None = None,
        max_duration_s: float | None = None,
        now_ns: int | None = None,
    ) -> RecordResult:
        """Start a clip around now, or extend the one recording. Never blocks on the disk."""
        cfg = self.config
        pre = cfg.pre_s if pre_s is None or pre_s < 0 else float(pre_s)
        duration = cfg.duration_s if duration_s is None or duration_s <= 0 else float(duration_s)
        max_d = cfg.max_duration_s
        if max_duration_s is not None and max_duration_s > 0:
            max_d = float(max_duration_s)
        # Old clips that enforce() may delete count as free space; scanned before taking the
        # lock, which the encoder thread needs for every frame.
        reclaimable = self.storage.used_bytes() if self._active is None else 0
        with self._lock:
            now = now_ns if now_ns is not None else self.source_clock_ns()
            if now is None:
                return RecordResult(False, "no frames received yet: nothing to record")
            request = {
                "event_id": event_id,
                "reason": reason,
                "stamp_ns": now,
                "wall_time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "pre_s": pre,
                "duration_s": duration,
                "max_duration_s": max_d,
            }
            clip = self._active
            if clip is not None and clip.failed is None:
                return self._extend(clip, request, now + round(duration * 1e9))
            return self._start(request, now, pre, duration, max_d, reclaimable)

    def _extend(self, clip: _Clip, request: dict[str, Any], wanted_end: int) -> RecordResult:
        end = min(wanted_end, clip.cap_ns)
        if end > clip.end_ns:
            clip.end_ns = end
        capped = wanted_end > clip.cap_ns
        clip.capped = clip.capped or capped
        request["end_ns"] = clip.end_ns
        clip.requests.append(request)
        note = f", capped at max_duration_s {clip.max_duration_s:g}" if capped else ""
        return RecordResult(
            True,
            f"extended clip to {(clip.end_ns - clip.trigger_ns) / 1e9:+.1f} s from its first "
            f"trigger{note}",
            str(clip.paths.video),
        )

    def _start(
        self,
        request: dict[str, Any],
        now: int,
        pre: float,
        duration: float,
        max_d: float,
        reclaimable: int,
    ) -> RecordResult:
        cfg = self.config
        start = now - round(pre * 1e9)
        packets = self.ring.select(start)
        if not packets:
            return RecordResult(False, "no encoded video in the buffer yet")
        first = packets[0]
        cap = first.stamp_ns + round(max_d * 1e9)
        wanted_end = now + round(duration * 1e9)
        end = min(wanted_end, cap)
        packets = [p for p in packets if p.stamp_ns <= end]
        seconds = max(self.ring.seconds, 0.5)
        estimate = int(self.ring.bytes / seconds * ((end - first.stamp_ns) / 1e9 + 1.0))
        try:
            if cfg.quota_bytes and estimate > cfg.quota_bytes:
                raise StorageError(
                    f"quota impossible: a {(end - first.stamp_ns) / 1e9:.1f} s clip needs about "
                    f"{estimate / 1e6:.1f} MB, more than quota_mb "
                    f"({cfg.quota_bytes / 1e6:.1f} MB)"
                )
            self.storage.check_free(estimate, reclaimable_bytes=reclaimable)
            self._clip_number += 1
            name = render_name(
                cfg.file_pattern,
                stream=cfg.stream,
                time=datetime.fromtimestamp(now / 1e9, timezone.utc),
                reason=request["reason"],
                event_id=request["event_id"],
                seq=self._clip_number,
            )
            paths = self.storage.new_paths(name)
        except (StorageError, ValueError, OSError) as exc:
            message = str(exc) if isinstance(exc, StorageError | ValueError) else _errno_text(exc)
            self.report_error(f"record refused: {message}")
            return RecordResult(False, message)
        request["end_ns"] = end
        clip = _Clip(
            number=self._clip_number,
            paths=paths,
            trigger_ns=now,
            pre_s=pre,
            duration_s=duration,
            max_duration_s=max_d,
            requested_start_ns=start,
            end_ns=end,
            cap_ns=cap,
            timeline=first.timeline,
            first_recv_ns=first.recv_ns,
            estimate_bytes=estimate,
            requests=[request],
            capped=wanted_end > cap,
        )
        self._jobs.put((clip, "open", packets))
        bag_pre = [m for m in self._bag_ring if m.recv_ns >= first.recv_ns]
        if bag_pre:
            self._jobs.put((clip, "bag", bag_pre))
        newest = self._newest_stamp()
        if newest is not None and newest > end:
            self._jobs.put((clip, "end", None))  # the whole window is in the buffer already
        else:
            self._active = clip
        note = ""
        if self._failed_since_success and self._last_failure:
            note = f" (the previous clip failed: {self._last_failure})"
        achieved = (now - first.stamp_ns) / 1e9
        return RecordResult(
            True,
            f"recording [{-achieved:.1f} s, {(end - now) / 1e9:+.1f} s] around now"
            + (f", capped at max_duration_s {max_d:g}" if clip.capped else "")
            + (f"; only {achieved:.1f} s of pre-roll buffered" if achieved + 1e-3 < pre else "")
            + note,
            str(paths.video),
        )

    def _newest_stamp(self) -> int | None:
        packets = list(self.ring)
        return packets[-1].stamp_ns if packets else None

    # -- encoder thread -------------------------------------------------------------------------
    def _encode_loop(self) -> None:
        while True:
            try:
                item = self._frames.get(timeout=0.1)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                self._check_stalled()
                continue
            if item is None:
                return
            image, stamp_ns, pixel_format, recv_ns = item
            with self._lock:
                self._busy += 1
            try:
                started = time.perf_counter()
                try:
                    packets = self.encoder.encode(image, stamp_ns, pixel_format, recv_ns)
                except (ValueError, av.error.FFmpegError) as exc:
                    self.encode_errors += 1
                    self.report_error(f"cannot encode a frame: {exc}")
                    continue
                self._encode_ms.append((time.perf_counter() - started) * 1e3)
                with self._lock:
                    for packet in packets:
                        self.ring.append(packet)
                        self._route(packet)
            finally:
                with self._lock:
                    self._busy -= 1

    def _route(self, packet: EncodedPacket) -> None:
        clip = self._active
        if clip is None:
            return
        if clip.failed is not None:
            self._active = None
        elif packet.timeline != clip.timeline:
            clip.ended_by = "the video changed size or its clock jumped"
            self._finish_active()
        elif packet.stamp_ns <= clip.end_ns:
            self._jobs.put((clip, "packet", packet))
        else:
            self._finish_active()

    def _finish_active(self) -> None:
        clip, self._active = self._active, None
        if clip is not None:
            self._jobs.put((clip, "end", None))

    def _check_stalled(self) -> None:
        with self._lock:
            clip = self._active
            if clip is None or self._busy or not self._frames.empty():
                return
            now = self.source_clock_ns()
            if now is not None and now > clip.end_ns + round(self.config.stall_s * 1e9):
                clip.ended_by = "no more frames"
                self._finish_active()

    # -- writer thread --------------------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            item = self._jobs.get()
            try:
                if item is None:
                    return
                self._write_one(*item)
            finally:
                self._jobs.task_done()

    def _write_one(self, clip: _Clip | None, kind: str, payload: Any) -> None:
        if clip is None:
            self._writer_task(kind, payload)
            return
        if clip.failed is not None:
            return
        try:
            if kind == "open":
                self._open_clip(clip, payload)
            elif kind == "packet":
                assert clip.writer is not None
                clip.writer.add(payload)
                self._check_space(clip)
            elif kind == "bag":
                self._write_bag(clip, payload)
            elif kind == "end":
                self._close_clip(clip)
        except Exception as exc:  # any failure stops this clip, not the node
            self._fail(clip, exc)

    def _writer_task(self, kind: str, payload: Any) -> None:
        try:
            if kind == "enforce":
                self.storage.enforce()
            elif kind == "encoder":
                # Runs on the writer thread only to serialise with clips; the encoder thread
                # picks the new settings up with its next frame.
                self.encoder.settings = payload
                self.encoder.reset()
        except Exception as exc:
            self.report_error(f"storage: {_errno_text(exc)}")

    def _open_clip(self, clip: _Clip, packets: list[EncodedPacket]) -> None:
        self.storage.enforce(
            reserve_bytes=clip.estimate_bytes, disk_reserve_bytes=clip.estimate_bytes
        )
        self.storage.check_free(0)
        fps = self._fps_estimate()
        clip.writer = Mp4ClipWriter(clip.paths.temp_video, fps_hint=fps)
        for packet in packets:
            clip.writer.add(packet)
        clip.last_check = time.monotonic()

    def _fps_estimate(self) -> float:
        packets = list(self.ring)
        if len(packets) < 2:
            return 30.0
        span = (packets[-1].stamp_ns - packets[0].stamp_ns) / 1e9
        return (len(packets) - 1) / span if span > 0 else 30.0

    def _check_space(self, clip: _Clip) -> None:
        if time.monotonic() - clip.last_check < 1.0:
            return
        clip.last_check = time.monotonic()
        written = clip.writer.bytes_in if clip.writer else 0
        written += clip.bag.bytes if clip.bag else 0
        # Make room for what this clip has become (QuotaExceeded when it alone is too big),
        # and stop before the disk is completely full.
        self.storage.enforce(reserve_bytes=written)
        self.storage.check_free(0)

    def _write_bag(self, clip: _Clip, messages: list[_BagMessage]) -> None:
        if self._registry is None:
            return
        if clip.bag is None:
            clip.bag = BagWriter(clip.paths.temp_bag, self._registry, self.config.bag_storage)
        for msg in messages:
            clip.bag.write(msg.topic, msg.msgtype, msg.data, msg.recv_ns)

    def _close_clip(self, clip: _Clip) -> None:
        writer = clip.writer
        assert writer is not None and writer.first is not None and writer.last is not None
        fsync = self.config.fsync
        writer.close(fsync=fsync)
        bag_counts: dict[str, int] = {}
        if clip.bag is not None:
            clip.bag.close()
            bag_counts = dict(clip.bag.counts)
        self.storage.write_json(clip.paths.temp_sidecar, self._sidecar(clip, bag_counts), fsync)
        self.storage.commit(clip.paths, fsync)
        size = sum(p.stat().st_size for p in (clip.paths.video, clip.paths.sidecar) if p.exists())
        with self._lock:
            self.clips_written += 1
            self.bytes_written += size
            self.last_clip = str(clip.paths.video)
            self._failed_since_success = False
        self._log(
            "info",
            f"clip {clip.paths.video}: {writer.frames} frames, "
            f"{writer.duration_s:.2f} s, {size / 1e6:.2f} MB"
            + (f", bag {sum(bag_counts.values())} messages" if clip.bag is not None else ""),
        )
        try:
            self.storage.enforce()
        except StorageError as exc:  # pragma: no cover
            self.report_error(str(exc))

    def _sidecar(self, clip: _Clip, bag_counts: dict[str, int]) -> dict[str, Any]:
        writer = clip.writer
        assert writer is not None and writer.first is not None and writer.last is not None
        cfg = self.config
        ids: list[str] = []
        reasons: list[str] = []
        for r in clip.requests:
            if r["event_id"] and r["event_id"] not in ids:
                ids.append(r["event_id"])
            if r["reason"] and r["reason"] not in reasons:
                reasons.append(r["reason"])
        first, last = writer.first, writer.last
        return {
            "format": SIDECAR_FORMAT,
            "video": clip.paths.video.name,
            "stream": cfg.stream,
            "source_topic": cfg.source_topic,
            "width": first.width,
            "height": first.height,
            "codec": "h264",
            "encoder": dataclasses.asdict(cfg.encoder),
            "time_base": "1/90000",
            "first_frame_stamp_ns": first.stamp_ns,
            "last_frame_stamp_ns": last.stamp_ns,
            "frames": writer.frames,
            "keyframes": writer.keyframes,
            "duration_s": round(writer.duration_s, 6),
            "trigger_stamp_ns": clip.trigger_ns,
            "requested": {
                "start_ns": clip.requested_start_ns,
                "end_ns": clip.end_ns,
                "pre_s": clip.pre_s,
                "duration_s": clip.duration_s,
                "max_duration_s": clip.max_duration_s,
            },
            "pre_s_achieved": round((clip.trigger_ns - first.stamp_ns) / 1e9, 6),
            "post_s_achieved": round((last.stamp_ns - clip.trigger_ns) / 1e9, 6),
            "capped": clip.capped,
            "ended_by": clip.ended_by,
            "event_ids": ids,
            "reasons": reasons,
            "requests": clip.requests,
            "bag": clip.paths.bag.name if clip.bag is not None else None,
            "bag_storage": cfg.bag_storage if clip.bag is not None else None,
            "bag_messages": bag_counts,
            "created": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        }

    def _fail(self, clip: _Clip, exc: BaseException) -> None:
        message = str(exc) if isinstance(exc, StorageError) else _errno_text(exc)
        clip.failed = message
        if clip.writer is not None:
            clip.writer.abort()
        if clip.bag is not None:
            clip.bag.abort()
        self.storage.discard(clip.paths)
        with self._lock:
            self.clips_failed += 1
            self._failed_since_success = True
            self._last_failure = message
            if self._active is clip:
                self._active = None
        self.report_error(f"recording {clip.paths.video} stopped: {message}")

    def report_error(self, message: str) -> None:
        with self._lock:
            self.last_error = message
            self.last_error_time = time.time()
        self._log("error", message)

    # -- state ----------------------------------------------------------------------------------
    @property
    def recording(self) -> bool:
        with self._lock:
            return self._active is not None

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every pushed frame is encoded, no clip records and the writer is done."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                idle = (
                    self._frames.empty()
                    and not self._busy
                    and self._active is None
                    and self._jobs.unfinished_tasks == 0
                )
            if idle:
                return True
            time.sleep(0.01)
        return False

    def wait_encoded(self, timeout: float = 10.0) -> bool:
        """Wait until every pushed frame is in the ring (and routed to the clip recording)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._frames.empty() and not self._busy:
                    return True
            time.sleep(0.005)
        return False

    def stats(self) -> dict[str, Any]:
        with self._lock:
            clip = self._active
            ms = list(self._encode_ms)
            stats = {
                "buffer seconds": self.ring.seconds,
                "buffer bytes": self.ring.bytes,
                "encode ms per frame": float(np.mean(ms)) if ms else 0.0,
                "frames received": self.frames_in,
                "frames dropped (encoder busy)": self.frames_dropped,
                "encode errors": self.encode_errors,
                "recording": str(clip.paths.video) if clip is not None else "",
                "clips written": self.clips_written,
                "clips failed": self.clips_failed,
                "last clip": self.last_clip,
                "last error": self.last_error,
                "bag buffer messages": len(self._bag_ring),
            }
        return stats

    def close(self, timeout: float = 30.0) -> None:
        """Stop: frames already queued are encoded, a clip in progress is finished with what it
        has (``ended_by: shutdown``) and written; then the threads end."""
        self._stopping.set()
        with contextlib.suppress(queue.Full):
            self._frames.put(None, timeout=timeout)
        self._encoder_thread.join(timeout)
        with self._lock:
            if self._active is not None:
                self._active.ended_by = "shutdown"
                self._finish_active()
        self._jobs.put(None)
        self._writer_thread.join(timeout)
