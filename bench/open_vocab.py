#!/usr/bin/env python3
"""Open-vocabulary detection: text-embedding cache and prompt-change latency.

    .venv/bin/python bench/open_vocab.py [--size tiny|base] [--frames 5] [--changes 10]
        [--threads N] [--rate 10] [--skip-node]

No OWL weights ship in any registry reachable here, so the models are RANDOMLY INITIALISED
(edge_vision.testing.tiny_owl): ``tiny`` (64 px, 2-layer encoders) and ``base`` (the layer sizes
of google/owlvit-base-patch32: ViT-B/32 at 768 px, 12-layer text model). Compute does not depend
on the weights' values, so ``base`` times what the real B/32 checkpoint costs on this CPU.

Measures, on 640x480 frames of vtest.avi (Debian opencv-doc):
1. per-frame cost in-process, ``OwlDetector.detect`` with the text embeddings cached (what the
   node does) versus re-encoding the prompt every frame (running the whole model per frame), for
   prompts of 1, 4 and 16 objects; and the text encoder alone;
2. prompt change to first frame with the new labels, over DDS: a feeder publishes frames at
   ``--rate`` Hz to an ``open_vocab_detector`` process; ``~/set_prompt`` is called with a new
   object list ``--changes`` times; reported are the service round trip (validation + text
   encoding + swap) and the time from the call to the first ``detections`` message whose labels
   are the new objects.
DDS stays on loopback on a domain of its own (edge_vision.testing.ros_harness).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from _common import Feeder, print_header, print_table

from edge_vision.testing.ros_harness import isolate_ros_environment

ENV = isolate_ros_environment(domain_id=150 + os.getpid() % 50)

from vision_msgs.msg import Detection2DArray  # noqa: E402  (after the environment is set)

from edge_vision.models.open_vocab import OwlDetector, Prompt  # noqa: E402
from edge_vision.srv import SetPrompt  # noqa: E402
from edge_vision.testing.media import VTEST, require  # noqa: E402
from edge_vision.testing.ros_harness import NodeProcess, RosClient  # noqa: E402
from edge_vision.testing.tiny_owl import write_tiny_owl  # noqa: E402

WORDS = (
    "a person", "a car", "a bag", "a hat", "a dog", "a bicycle", "a bench", "a tree",
    "a door", "a window", "a sign", "a shoe", "a cup", "a phone", "a chair", "a ball",
)  # fmt: skip


def load_frames(count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(require(VTEST)))
    frames = []
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(frame, (640, 480), interpolation=cv2.INTER_AREA))
    return frames


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:.1f}"


def per_frame(model: Path, frames: list[np.ndarray], n: int) -> None:
    detector = OwlDetector.load(model)
    detector.detect(frames[0], Prompt.create(["warm up"], [0.1]))
    rows = []
    for count in (1, 4, 16):
        prompt = Prompt.create(WORDS[:count], [0.1])
        encode = []
        for i in range(n):  # the text encoder alone, on distinct object lists (no cache hit)
            fresh = Prompt.create([f"{w} {i}" for w in WORDS[:count]], [0.1])
            started = time.perf_counter()
            detector.text_embeddings(fresh)
            encode.append(time.perf_counter() - started)
        cached, uncached = [], []
        for i in range(n):
            frame = frames[i % len(frames)]
            started = time.perf_counter()
            detector.detect(frame, prompt)
            cached.append(time.perf_counter() - started)
            started = time.perf_counter()
            detector.detect(frame, prompt, use_cache=False)
            uncached.append(time.perf_counter() - started)
        rows.append(
            [
                str(count),
                ms(encode),
                ms(cached),
                ms(uncached),
                f"{statistics.median(uncached) / statistics.median(cached):.2f}",
            ]
        )
    print(f"\nper-frame cost, median of {n} frames (ms)")
    print_table(
        ["objects", "text encoder alone", "frame, cached text", "frame, text per frame", "ratio"],
        rows,
    )


def prompt_changes(
    model: Path, frames: list[np.ndarray], changes: int, rate: float, threads: int
) -> None:
    ns = "bench_ov"
    node = NodeProcess(
        "open_vocab_detector",
        namespace=ns,
        parameters={
            "model": str(model),
            "objects": ["a person"],
            "thresholds": [0.0],
            "threads": threads,
        },
        remappings={"image": "image_raw"},
    )
    ros = RosClient("bench_open_vocab")
    feeder = Feeder(ros, f"/{ns}/image_raw", frames)
    try:
        collector = ros.subscribe(Detection2DArray, f"/{ns}/detections")
        feeder.start(rate)
        collector.wait_for(3, timeout=600)
        round_trips, first_new, frame_gaps = [], [], []
        for i in range(changes):
            objects = [f"{w} {i}" for w in WORDS[:4]]  # a new object list: a text pass each time
            collector.clear()
            started_ns = time.time_ns()
            reply = ros.call(
                SetPrompt,
                f"/{ns}/open_vocab_detector/set_prompt",
                SetPrompt.Request(objects=objects, thresholds=[0.0]),
                timeout=120,
            )
            replied_ns = time.time_ns()
            assert reply.success, reply.message
            deadline = time.monotonic() + 120
            arrived = None
            while arrived is None and time.monotonic() < deadline:
                msgs, times = list(collector.messages), list(collector.arrival_ns)
                for msg, t in zip(msgs, times, strict=True):
                    names = {r.hypothesis.class_id for d in msg.detections for r in d.results}
                    if names and names <= set(objects):
                        arrived = t
                        break
                time.sleep(0.002)
            if arrived is None:
                raise TimeoutError("no frame with the new labels in 120 s")
            round_trips.append((replied_ns - started_ns) / 1e9)
            first_new.append((arrived - started_ns) / 1e9)
            frame_gaps.append((arrived - replied_ns) / 1e9)
            time.sleep(0.3)
        print(f"\nprompt change -> first frame with the new labels, {changes} changes (ms)")
        print_table(
            ["", "median", "max"],
            [
                ["~/set_prompt round trip", ms(round_trips), f"{max(round_trips) * 1e3:.1f}"],
                ["reply -> first new frame", ms(frame_gaps), f"{max(frame_gaps) * 1e3:.1f}"],
                ["call -> first new frame", ms(first_new), f"{max(first_new) * 1e3:.1f}"],
            ],
        )
        collector.destroy()
    finally:
        feeder.stop()
        ros.close()
        node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "base"), default="tiny")
    parser.add_argument("--frames", type=int, default=5, help="timed frames per case")
    parser.add_argument("--changes", type=int, default=10, help="prompt changes timed")
    parser.add_argument("--rate", type=float, default=10.0, help="frames/s fed to the node")
    parser.add_argument("--threads", type=int, default=0, help="PyTorch threads (0: default)")
    parser.add_argument("--skip-node", action="store_true", help="only the in-process part")
    args = parser.parse_args()
    print_header()
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    frames = load_frames(20)
    with tempfile.TemporaryDirectory(prefix="bench-owl-") as tmp:
        model = write_tiny_owl(Path(tmp) / args.size, base_size=args.size == "base")
        import torch

        print(
            f"model: randomly initialised OWL-ViT, {args.size} size, 640x480 frames, "
            f"{torch.get_num_threads()} PyTorch threads"
        )
        per_frame(model, frames, args.frames)
        if not args.skip_node:
            prompt_changes(model, frames, args.changes, args.rate, args.threads)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
