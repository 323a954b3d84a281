#!/usr/bin/env python3
"""Per-image latency of every zoo model on this machine (core API, no ROS).

    .venv/bin/python bench/models.py [--runs 30]

Detectors on a 640x480 vtest.avi frame, the classifier on a frame and on a batch of 8 crops,
pose models on real photos. Median of ``--runs`` after a warm-up, ONNX Runtime on CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import cv2
import numpy as np
from _common import print_header, print_table

from edge_vision.models import zoo
from edge_vision.testing.media import OPENCV_DATA, VTEST, require


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    print_header()

    cap = cv2.VideoCapture(str(require(VTEST)))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 200)
    frame = cv2.resize(cap.read()[1], (640, 480), interpolation=cv2.INTER_AREA)
    rows = []
    for name in ("nanodet-m", "centernet-mbv3"):
        det = zoo.load_detector(name)
        n = len(det.detect(frame))
        rows.append(
            (
                name,
                "detect(), 640x480 frame",
                median_ms(lambda d=det: d.detect(frame), args.runs),
                f"{n} objects",
            )
        )

    clf = zoo.load_classifier("efficientnet-lite0")
    rows.append(
        (
            "efficientnet-lite0",
            "classify(), 640x480 frame",
            median_ms(lambda: clf.classify(frame), args.runs),
            "",
        )
    )
    boxes = zoo.load_detector("nanodet-m").detect(frame).xyxy[:8]
    boxes = np.resize(boxes, (8, 4))
    rows.append(
        (
            "efficientnet-lite0",
            "classify_boxes(), 8 crops, one batch",
            median_ms(lambda: clf.classify_boxes(frame, boxes), args.runs),
            "",
        )
    )

    from edge_vision.models.pose import PoseEstimator

    person = cv2.imread(str(require(OPENCV_DATA / "messi5.jpg")))
    with PoseEstimator("body", static_image_mode=True) as body:
        rows.append(
            (
                "mediapipe-pose",
                "estimate(), messi5.jpg, no tracking",
                median_ms(lambda: body.estimate(person), args.runs),
                "",
            )
        )
    with PoseEstimator("hands", static_image_mode=True, max_hands=2) as hands:
        rows.append(
            (
                "mediapipe-hands",
                "estimate(), messi5.jpg, no tracking",
                median_ms(lambda: hands.estimate(person), args.runs),
                "",
            )
        )

    print()
    print_table(
        ["model", "call", "median ms", "note"],
        [[name, call, f"{ms:.1f}", note] for name, call, ms, note in rows],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
