#!/usr/bin/env python3
"""Detector node against a raw ONNX Runtime loop on the same model and frames, in one run.

    .venv/bin/python bench/detector_node.py [--model nanodet-m] [--frames 60] [--seconds 8]

Measures, on 640x480 frames of vtest.avi (Debian opencv-doc):
1. raw: ``Detector.detect`` in a plain loop (preprocessing + ONNX Runtime + decoding + NMS);
2. node throughput: the ``detector`` node in its own process, fed faster than it can keep up
   (it takes the newest frame), detections/s received, as a ratio to raw;
3. added latency: frames fed slowly (each one handled alone), median detection arrival minus
   image stamp, minus raw median ``detect`` time = what the node adds (conversion, transport both
   ways, publishing);
4. end to end: ``video_source`` (vtest.avi at its 10 fps, 768x576) -> ``detector``, detection
   arrival minus capture stamp.
DDS stays on loopback on a domain of its own (edge_vision.testing.ros_harness).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from _common import Feeder, measure, node_breakdown, print_header, print_table

from edge_vision.testing.ros_harness import isolate_ros_environment

ENV = isolate_ros_environment(domain_id=150 + os.getpid() % 50)

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402  (after the environment is set)
from rclpy.qos import QoSProfile  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

from edge_vision.models.zoo import load_detector, pull  # noqa: E402
from edge_vision.testing.media import VTEST, require  # noqa: E402
from edge_vision.testing.ros_harness import NodeProcess, RosClient  # noqa: E402


def load_frames(count: int, size: tuple[int, int] = (640, 480)) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(require(VTEST)))
    frames = []
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    return frames


def raw_loop(model: str, frames: list[np.ndarray], seconds: float) -> dict[str, float]:
    detector = load_detector(model)
    detector.detect(frames[0])  # warm-up
    times = []
    started = time.perf_counter()
    i = 0
    while time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        detector.detect(frames[i % len(frames)])
        times.append(time.perf_counter() - t0)
        i += 1
    total = time.perf_counter() - started
    return {"fps": i / total, "median_ms": statistics.median(times) * 1e3}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="nanodet-m")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(
        "--overfeed", type=float, default=1.25, help="feed rate / raw fps in the throughput phase"
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    print_header()
    print(f"ROS_DOMAIN_ID={ENV['ROS_DOMAIN_ID']}")
    pull(args.model)
    frames = load_frames(args.frames)
    results: dict[str, object] = {"model": args.model, "frame_size": "640x480"}

    raw = raw_loop(args.model, frames, args.seconds)
    results["raw"] = raw

    ros = RosClient("bench_detector")
    node = NodeProcess(
        "detector",
        namespace="bench",
        parameters={"model": args.model},
        remappings={"image": "/bench/image"},
    )
    try:
        collector = ros.subscribe(Detection2DArray, "/bench/detections", qos=QoSProfile(depth=50))
        feeder = Feeder(ros, "/bench/image", frames)
        # Warm-up until the node answers (model load, discovery).
        feeder.start(5.0)
        collector.wait_for(5, timeout=120)
        feeder.stop()

        diags = ros.subscribe(DiagnosticArray, "/diagnostics", qos=QoSProfile(depth=50))
        feeder.start(rate=raw["fps"] * args.overfeed)  # more than it can take: it keeps the newest
        node_fps, _ = measure(collector, args.seconds)
        feeder.stop()
        results["node_inside_busy_ms"] = node_breakdown(diags.messages, node.fqn)
        diags.destroy()
        results["node_fps"] = node_fps
        results["throughput_ratio"] = node_fps / raw["fps"]

        time.sleep(1.0)
        diags = ros.subscribe(DiagnosticArray, "/diagnostics", qos=QoSProfile(depth=50))
        feeder.start(rate=min(5.0, raw["fps"] / 4))  # slow: every frame handled alone
        _, latencies = measure(collector, args.seconds)
        feeder.stop()
        inside = node_breakdown(diags.messages, node.fqn)
        diags.destroy()
        results["node_inside_ms"] = inside
        node_lat = statistics.median(latencies)
        results["node_latency_ms"] = {
            "median": node_lat,
            "p95": float(np.percentile(latencies, 95)),
        }
        results["added_latency_ms"] = node_lat - raw["median_ms"]
    finally:
        node.stop()

    source = NodeProcess("video_source", namespace="bench", parameters={"uri": str(VTEST)})
    node = NodeProcess(
        "detector",
        namespace="bench",
        parameters={"model": args.model},
        remappings={"image": "image_raw"},
    )
    try:
        collector.wait_for(len(collector.messages) + 5, timeout=120)
        _, latencies = measure(collector, args.seconds)
        e2e = {
            "median": statistics.median(latencies),
            "p95": float(np.percentile(latencies, 95)),
            "max": max(latencies),
        }
        results["end_to_end_ms"] = e2e
    finally:
        node.stop()
        source.stop()
        ros.close()

    lat = results["node_latency_ms"]
    print()
    print_table(
        ["measure", "value"],
        [
            [
                "raw `Detector.detect` loop, 640x480",
                f"{raw['fps']:.1f} fps ({raw['median_ms']:.1f} ms median)",
            ],
            ["detector node fed faster than it can go", f"{node_fps:.1f} fps"],
            ["node / raw throughput", f"**{results['throughput_ratio']:.3f}**"],
            [
                "node latency, frames fed at low rate (stamp -> detections received)",
                f"{lat['median']:.1f} ms median, {lat['p95']:.1f} ms p95",
            ],
            [
                "added latency (node median - raw median)",
                f"**{results['added_latency_ms']:.1f} ms**",
            ],
            [
                "  inside the node: waiting for the inference thread",
                f"{inside.get('wait_ms_median', '?')} ms",
            ],
            [
                "  inside the node: conversion, filtering, message, publish",
                f"{inside.get('overhead_ms_median', '?')} ms",
            ],
            [
                "end to end: video_source (768x576 @ 10 fps) capture -> detections",
                f"{e2e['median']:.1f} ms median, {e2e['p95']:.1f} ms p95",
            ],
        ],
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
