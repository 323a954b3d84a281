#!/usr/bin/env python3
"""Recorder: CPU cost of the pre-event buffer, and time from a record call to a complete file.

1. **Pre-event buffer** (encode every frame once with libx264 ultrafast/zerolatency + keep the
   packets in the ring): frames pushed in real time at 30 fps into
   :class:`edge_vision.recording.recorder.Recorder`, as the node's image callback does, for
   ``--seconds``. Reported: CPU of the process (all threads, x264's own included; the pacing
   loop's share measured alone and subtracted) in % of one core and ms per frame, wall time
   per ``encode()`` call (median, p95), the stream's bitrate, frames dropped because the
   encoder was behind. Content: ``vtest`` (OpenCV's vtest.avi, a real street scene,
   scaled to the size; 90 frames looped) and ``testsrc2`` (FFmpeg's generator, more detail).
2. **Record call -> complete file**, in process: after 6 s of buffer, a request with
   ``pre_s=5, duration_s=5``; the time until the final MP4 exists (renamed: complete, sidecar
   written, fsync'd), measured from the call and from the end of the window (trigger stamp +
   5 s; frames are stamped with the wall clock when pushed, as video_source stamps capture time).
3. **Same through ROS** (skip with ``--skip-ros``): video_source (test pattern, real time) ->
   recorder node, ``~/record`` called over DDS; the window end is the trigger stamp in the
   sidecar + 5 s (video_source's stamps are capture wall time). DDS stays on loopback
   (edge_vision.testing.ros_harness).

    python bench/recording.py                      # everything, about 3 minutes
    python bench/recording.py --sizes 640x480 --seconds 5 --skip-ros
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # running from a checkout without the package installed
    sys.path.insert(0, str(REPO))

from _common import print_header, print_table  # noqa: E402

from edge_vision.recording.prebuffer import EncoderSettings  # noqa: E402
from edge_vision.recording.recorder import Recorder, RecorderConfig  # noqa: E402

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
FPS = 30.0


def load_frames(content: str, width: int, height: int, count: int) -> list[np.ndarray]:
    if content == "vtest":
        if not VTEST.exists():
            raise SystemExit(f"{VTEST} is missing: run `make setup` (Debian opencv-doc)")
        source = av.open(str(VTEST))
    else:
        source = av.open(f"testsrc2=size={width}x{height}:rate={FPS:g}", format="lavfi")
    frames = []
    with source:
        for frame in source.decode(video=0):
            image = frame.to_ndarray(format="bgr24")
            if image.shape[:2] != (height, width):
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
            frames.append(image)
            if len(frames) == count:
                break
    return frames


def cpu_steal() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[7], sum(fields[:8])


class Pacer:
    """Pushes ``frames`` (looped) into the recorder at ``fps``, stamped with the wall clock."""

    def __init__(self, recorder: Recorder, frames: list[np.ndarray], fps: float = FPS) -> None:
        self.recorder = recorder
        self.frames = frames
        self.period = 1.0 / fps
        self.pushed = 0
        self.late = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Pacer:
        self._thread.start()
        return self

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            self.recorder.push_frame(self.frames[self.pushed % len(self.frames)], time.time_ns())
            self.pushed += 1
            next_t += self.period
            delay = next_t - time.monotonic()
            if delay < 0:
                self.late += 1
                next_t = time.monotonic()  # no burst to catch up (a camera does not do that)
            self._stop.wait(max(0.0, delay))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class _NullRecorder:
    """Takes frames and does nothing: the pacing loop's own CPU, to subtract."""

    def push_frame(self, *_args: Any) -> bool:
        return True


def pacing_baseline(frames: list[np.ndarray], seconds: float) -> float:
    pacer = Pacer(_NullRecorder(), frames).start()  # type: ignore[arg-type]
    try:
        time.sleep(0.5)
        t0, cpu0 = time.monotonic(), time.process_time()
        time.sleep(seconds)
        return (time.process_time() - cpu0) / (time.monotonic() - t0)
    finally:
        pacer.stop()


def make_recorder(out: Path, threads: int = 0) -> Recorder:
    return Recorder(
        RecorderConfig(
            output_dir=str(out),
            stream="bench",
            buffer_s=10.0,
            encoder=EncoderSettings(threads=threads),
            quota_bytes=0,
            min_free_bytes=0,
        )
    )


def bench_buffer(
    frames: list[np.ndarray], seconds: float, threads: int, tmp: Path
) -> dict[str, Any]:
    rec = make_recorder(tmp / f"buffer-{threads}", threads)
    pacer = Pacer(rec, frames).start()
    try:
        time.sleep(2.0)  # warm up: encoder opened, ring filling
        rec._encode_ms.clear()
        dropped0 = rec.frames_dropped
        pushed0 = pacer.pushed
        t0, proc0, steal0 = time.monotonic(), time.process_time(), cpu_steal()
        time.sleep(seconds)
        t1, proc1, steal1 = time.monotonic(), time.process_time(), cpu_steal()
        ms = list(rec._encode_ms)
        stats = rec.stats()
    finally:
        pacer.stop()
        rec.close()
    wall = t1 - t0
    return {
        "process_cpu": (proc1 - proc0) / wall,
        "ms_median": statistics.median(ms),
        "ms_p95": float(np.percentile(ms, 95)),
        "frames": pacer.pushed - pushed0,
        "fps": (pacer.pushed - pushed0) / wall,
        "dropped": rec.frames_dropped - dropped0,
        "mbit_s": stats["buffer bytes"] * 8 / 1e6 / max(stats["buffer seconds"], 1e-6),
        "buffer_s": stats["buffer seconds"],
        "buffer_mb": stats["buffer bytes"] / 1e6,
        "steal": (steal1[0] - steal0[0]) / max(1, steal1[1] - steal0[1]),
    }


def wait_for(path: Path, timeout: float) -> int | None:
    """time.time_ns() when ``path`` exists (polled every 2 ms), None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return time.time_ns()
        time.sleep(0.002)
    return None


def bench_record(frames: list[np.ndarray], repeats: int, tmp: Path) -> list[dict[str, Any]]:
    out = tmp / f"record-{frames[0].shape[1]}"
    rec = make_recorder(out)
    pacer = Pacer(rec, frames).start()
    results = []
    try:
        time.sleep(6.5)  # 5 s of pre-roll plus a GOP
        for _ in range(repeats):
            called = time.time_ns()
            reply = rec.request("bench", "bench", pre_s=5.0, duration_s=5.0, max_duration_s=60.0)
            answered = time.time_ns()
            assert reply.success, reply.message
            appeared = wait_for(Path(reply.path), 30.0)
            assert appeared is not None, f"{reply.path} did not appear"
            meta = json.loads(Path(reply.path).with_suffix(".json").read_text())
            window_end = meta["trigger_stamp_ns"] + 5 * 10**9
            results.append(
                {
                    "reply_ms": (answered - called) / 1e6,
                    "from_call_s": (appeared - called) / 1e9,
                    "from_window_end_ms": (appeared - window_end) / 1e6,
                    "pre_s": meta["pre_s_achieved"],
                    "clip_s": meta["duration_s"],
                    "frames": meta["frames"],
                    "mb": Path(reply.path).stat().st_size / 1e6,
                }
            )
            time.sleep(1.0)
    finally:
        pacer.stop()
        rec.close()
    return results


def bench_ros(repeats: int, tmp: Path) -> list[dict[str, Any]]:
    from edge_vision.testing.ros_harness import isolate_ros_environment

    isolate_ros_environment()
    from edge_vision.srv import Record
    from edge_vision.testing.ros_harness import NodeProcess, RosClient

    out = tmp / "ros"
    ros = RosClient("bench_recording")
    source = NodeProcess(
        "video_source",
        namespace="bench",
        parameters={"uri": "test://pattern?width=640&height=480&fps=30"},
        log_dir=tmp / "logs",
    )
    recorder = NodeProcess(
        "recorder",
        namespace="bench",
        remappings={"image": "image_raw"},
        parameters={"output_dir": str(out), "buffer_s": 6.0},
        log_dir=tmp / "logs",
    )
    results = []
    client = ros.node.create_client(Record, "/bench/recorder/record")
    try:
        if not recorder.wait_for_output("buffering", 30):
            raise SystemExit("recorder did not start:\n" + recorder.output())
        if not client.wait_for_service(timeout_sec=30):
            raise SystemExit("no ~/record service")
        time.sleep(8.0)  # 5 s of pre-roll plus a GOP
        for _ in range(repeats):
            request = Record.Request(event_id="bench", reason="bench", pre_s=5.0, duration_s=5.0)
            called = time.time_ns()
            future = client.call_async(request)
            while not future.done():
                time.sleep(0.0002)
            answered = time.time_ns()
            reply = future.result()
            assert reply.success, reply.message
            appeared = wait_for(Path(reply.path), 30.0)
            assert appeared is not None, f"{reply.path} did not appear"
            meta = json.loads(Path(reply.path).with_suffix(".json").read_text())
            window_end = meta["trigger_stamp_ns"] + 5 * 10**9
            results.append(
                {
                    "reply_ms": (answered - called) / 1e6,
                    "from_call_s": (appeared - called) / 1e9,
                    "from_window_end_ms": (appeared - window_end) / 1e6,
                    "pre_s": meta["pre_s_achieved"],
                    "clip_s": meta["duration_s"],
                    "frames": meta["frames"],
                    "mb": Path(reply.path).stat().st_size / 1e6,
                }
            )
            time.sleep(1.0)
    finally:
        ros.node.destroy_client(client)
        recorder.stop()
        source.stop()
        ros.close()
    return results


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def _span(rows: list[dict[str, Any]], key: str, fmt: str) -> str:
    values = [r[key] for r in rows]
    low, mid, high = (format(v, fmt) for v in (min(values), statistics.median(values), max(values)))
    return f"{mid} ({low}-{high})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="640x480,1920x1080", help="comma-separated WxH")
    parser.add_argument("--content", default="vtest,testsrc2", help="vtest and/or testsrc2")
    parser.add_argument("--seconds", type=float, default=10.0, help="per buffer measurement")
    parser.add_argument("--repeats", type=int, default=3, help="record calls per size")
    parser.add_argument("--skip-ros", action="store_true", help="no ROS part (3)")
    parser.add_argument("--json", help="also write all results here")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    contents = args.content.split(",")
    started = time.monotonic()
    print_header()
    print(
        f"av {av.__version__}, FFmpeg {av.ffmpeg_version_info}; "
        "libx264 ultrafast, zerolatency, crf 23, GOP 1 s"
    )
    everything: dict[str, Any] = {"buffer": [], "record": {}, "ros": None}
    with tempfile.TemporaryDirectory(prefix="ev-rec-bench-") as tmpdir:
        tmp = Path(tmpdir)
        rows = []
        baseline = None
        for width, height in sizes:
            for content in contents:
                frames = load_frames(content, width, height, 90)
                if baseline is None:
                    baseline = pacing_baseline(frames, min(args.seconds, 5.0))
                    everything["pacing_baseline_cpu"] = baseline
                thread_options = [0, 1] if width >= 1280 else [0]
                for threads in thread_options:
                    r = bench_buffer(frames, args.seconds, threads, tmp)
                    everything["buffer"].append(
                        {"size": f"{width}x{height}", "content": content, "threads": threads, **r}
                    )
                    rows.append(
                        [
                            f"{width}x{height}",
                            content,
                            "auto" if threads == 0 else str(threads),
                            f"{100 * (r['process_cpu'] - baseline):.1f}",
                            f"{1e3 * (r['process_cpu'] - baseline) / r['fps']:.1f}",
                            f"{r['ms_median']:.1f} / {r['ms_p95']:.1f}",
                            f"{r['fps']:.1f}",
                            str(r["dropped"]),
                            f"{r['mbit_s']:.2f}",
                            f"{r['buffer_mb']:.1f} MB in {r['buffer_s']:.1f} s",
                            f"{100 * r['steal']:.1f}",
                        ]
                    )
                del frames
        print()
        print(
            f"1. pre-event buffer (encode + ring), frames pushed at {FPS:g} fps for "
            f"{args.seconds:g} s after 2 s of warm-up"
        )
        print(
            "CPU: the process's CPU time (all threads, x264's included) over wall time, minus "
            f"the pacing loop alone ({100 * (baseline or 0.0):.1f} %)"
        )
        print_table(
            [
                "size",
                "content",
                "x264 threads",
                "CPU, % of one core",
                "CPU ms per frame",
                "encode ms/frame median / p95",
                "fps in",
                "dropped",
                "Mbit/s",
                "ring",
                "steal %",
            ],
            rows,
        )

        rows = []
        for width, height in sizes:
            frames = load_frames("vtest", width, height, 90)
            results = bench_record(frames, args.repeats, tmp)
            everything["record"][f"{width}x{height}"] = results
            rows.append(
                [
                    f"{width}x{height} (vtest)",
                    _span(results, "reply_ms", ".2f"),
                    _span(results, "from_call_s", ".2f"),
                    _span(results, "from_window_end_ms", ".0f"),
                    _span(results, "pre_s", ".2f"),
                    _span(results, "clip_s", ".2f"),
                    _span(results, "mb", ".1f"),
                ]
            )
            del frames
        ros_results = None
        if not args.skip_ros:
            ros_results = bench_ros(args.repeats, tmp)
            everything["ros"] = ros_results
            rows.append(
                [
                    "640x480 over ROS (video_source -> recorder, ~/record over DDS)",
                    _span(ros_results, "reply_ms", ".2f"),
                    _span(ros_results, "from_call_s", ".2f"),
                    _span(ros_results, "from_window_end_ms", ".0f"),
                    _span(ros_results, "pre_s", ".2f"),
                    _span(ros_results, "clip_s", ".2f"),
                    _span(ros_results, "mb", ".1f"),
                ]
            )
        print()
        print(
            f"2. record call (pre_s 5, duration_s 5) -> final MP4 renamed into place, fsync on; "
            f"median (min-max) of {args.repeats}"
        )
        print_table(
            [
                "case",
                "reply, ms",
                "call -> file, s",
                "window end -> file, ms",
                "pre-roll, s",
                "clip, s",
                "MB",
            ],
            rows,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=1))
    print()
    print(
        f"load average at the end {os.getloadavg()[0]:.2f}; "
        f"total {time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
