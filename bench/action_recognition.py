#!/usr/bin/env python3
"""Clip-based action recognition: clips/s and real-time factor per model, and the
action_recognizer node's overhead against a raw inference loop on the same clips, in one run.

    .venv/bin/python bench/action_recognition.py [--runs 5] [--seconds 12]

Models (ONNX Runtime, CPU): the zoo's I3D (Kinetics-400, T=16 at 224 px, real weights) and
r3d_18 at T=16, 112 px built by edge_vision.models.video_resnet with RANDOM weights (no
torchvision weights ship offline; the cost does not depend on the weights' values).
Real-time factor = inference time per clip / duration of the T frames it covers at 25 fps;
below 1 the model keeps up with non-overlapping windows.
The node part feeds vtest.avi frames (768x576) at 10 fps into action_recognizer (T=16,
stride 8: one window per 0.8 s) and measures window arrival minus the window's last stamp.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_vision.testing.ros_harness import isolate_ros_environment

ENV = isolate_ros_environment(domain_id=150 + os.getpid() % 50)

from _common import Feeder, measure, node_breakdown, print_header, print_table  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402

from edge_vision.models.action import ActionSpec, VideoClassifier  # noqa: E402
from edge_vision.models.zoo import load_video_classifier, pull  # noqa: E402
from edge_vision.testing.media import VTEST, require  # noqa: E402
from edge_vision.testing.ros_harness import NodeProcess, RosClient  # noqa: E402

SOURCE_FPS = 25.0


def r3d_18_random(dest: Path) -> VideoClassifier:
    from edge_vision.models import video_resnet

    model = video_resnet.build("r3d_18").eval()
    path = video_resnet.export_onnx(model, dest / "r3d_18_random.onnx", clip_len=16, size=112)
    spec = ActionSpec(
        name="r3d_18 (random weights)",
        clip_len=16,
        input_size=(112, 112),
        mean=tuple(255 * m for m in video_resnet.MEAN),
        std=tuple(255 * s for s in video_resnet.STD),
    )
    return VideoClassifier(path, spec)


def time_clips(model: VideoClassifier, clip_len: int, runs: int) -> float:
    """Median ms per clip, on real frames of vtest.avi."""
    import cv2

    cap = cv2.VideoCapture(str(require(VTEST)))
    frames = [model.preprocess_frame(cap.read()[1]) for _ in range(clip_len)]
    clip = np.stack(frames)
    model.classify_clip(clip)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model.classify_clip(clip)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=12.0)
    args = parser.parse_args()
    print_header()
    pull("i3d-kinetics400")

    rows = []
    i3d = load_video_classifier("i3d-kinetics400", clip_len=16)
    raw_i3d_ms = time_clips(i3d, 16, args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        r3d = r3d_18_random(Path(tmp))
        raw_r3d_ms = time_clips(r3d, 16, args.runs)
    for name, size, ms in (
        ("i3d-kinetics400", 224, raw_i3d_ms),
        ("r3d_18 (random weights)", 112, raw_r3d_ms),
    ):
        rows.append(
            [
                name,
                f"16 x {size} x {size}",
                f"{ms:.0f}",
                f"{1000 / ms:.2f}",
                f"{ms / 1000 / (16 / SOURCE_FPS):.2f}",
            ]
        )
    print()
    print_table(
        ["model", "clip (T x H x W)", "ms per clip", "clips/s", "real-time factor @25 fps"], rows
    )

    import cv2

    cap = cv2.VideoCapture(str(VTEST))
    frames = [cap.read()[1] for _ in range(48)]
    ros = RosClient("bench_action")
    node = NodeProcess(
        "action_recognizer",
        namespace="bench",
        parameters={"clip_len": 16, "stride": 8},
        remappings={"image": "/bench/image"},
    )
    try:
        from edge_vision.msg import ActionWindow

        windows = ros.subscribe(ActionWindow, "/bench/action_windows", qos=QoSProfile(depth=20))
        feeder = Feeder(ros, "/bench/image", frames)
        feeder.start(10.0)
        windows.wait_for(2, timeout=180)
        diags = ros.subscribe(DiagnosticArray, "/diagnostics", qos=QoSProfile(depth=50))
        rate, _ = measure(windows, args.seconds)
        msgs, arrivals = list(windows.messages), list(windows.arrival_ns)
        feeder.stop()
        from edge_vision.ros.image_conversion import stamp_to_ns

        lags = [(a - stamp_to_ns(m.end)) / 1e6 for m, a in zip(msgs, arrivals, strict=True)]
        inside = node_breakdown(diags.messages, node.fqn)
    finally:
        node.stop()
        ros.close()
    lag = statistics.median(lags)
    print()
    print_table(
        ["action_recognizer node (I3D, T=16, stride 8, 768x576 frames at 10 fps)", "value"],
        [
            ["windows/s published (expected 1.25)", f"{rate:.2f}"],
            [
                "window latency: last frame stamp -> ActionWindow received",
                f"{lag:.0f} ms median, {max(lags):.0f} ms max",
            ],
            ["raw I3D classify_clip() on the same clip size", f"{raw_i3d_ms:.0f} ms"],
            ["node added latency (median - raw)", f"**{lag - raw_i3d_ms:.0f} ms**"],
            ["inside the node: inference (mean)", f"{inside.get('inference_ms_mean', '?')} ms"],
            [
                "inside the node: waiting for the inference thread",
                f"{inside.get('wait_ms_median', '?')} ms",
            ],
            [
                "inside the node: message building and publishing",
                f"{inside.get('overhead_ms_median', '?')} ms",
            ],
            ["windows skipped", inside.get("frames_dropped", "?")],
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
