#!/usr/bin/env python3
"""Background training on real footage while a classifier keeps serving, with hot reload.

    .venv/bin/python bench/training.py [--size 224] [--epochs 4] [--step 4] [--threads 1]
                                       [--freeze] [--lr 0.001]

1. Dataset from OpenCV's box.mp4 and cup.mp4 (Debian opencv-doc), tags ``box`` and ``cup``:
   every ``step``-th frame of the first 60 % of each video into train/, every ``step``-th of
   the last 25 % into val/ (the 15 % between is left out), plus one corrupt JPEG in train/box.
2. ``video_source`` plays the held-out frames (10 fps, looping) -> ``classifier`` (ImageNet
   EfficientNet-Lite0 at first); the ``trainer`` node (classifier_node ``classifier``) is
   started by its ``~/start`` service and fine-tunes EfficientNet-Lite0 in its own process.
3. Reported: val accuracy and wall time per epoch, minutes until val accuracy >= 0.9; the
   classification messages during training (largest gap between two, median interval) against
   the same before training; after the hot reload, the classifier's accuracy on every held-out
   frame (published one at a time, matched by stamp).
DDS stays on loopback on a domain of its own (edge_vision.testing.ros_harness).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
from _common import print_header, print_table

from edge_vision.testing.ros_harness import isolate_ros_environment

ENV = isolate_ros_environment(domain_id=150 + os.getpid() % 50)

from rclpy.qos import QoSProfile  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from vision_msgs.msg import Classification, LabelInfo  # noqa: E402

from edge_vision.models.zoo import pull  # noqa: E402
from edge_vision.msg import TrainingProgress  # noqa: E402
from edge_vision.ros.conversions import labels_from_label_info  # noqa: E402
from edge_vision.ros.image_conversion import numpy_to_image, stamp_to_ns  # noqa: E402
from edge_vision.ros.qos import latched_qos  # noqa: E402
from edge_vision.testing.ros_harness import NodeProcess, RosClient, wait_until  # noqa: E402
from edge_vision.training.footage import build_box_cup_dataset  # noqa: E402


def gaps_s(arrivals_ns: list[int]) -> list[float]:
    return [(b - a) / 1e9 for a, b in itertools.pairwise(arrivals_ns)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=224, help="model input width = height")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--step", type=int, default=4, help="every n-th frame into the dataset")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training")
    parser.add_argument("--freeze", action="store_true", help="train the last layer only")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    args = parser.parse_args()
    print_header()
    pull("efficientnet-lite0")

    work = Path(tempfile.mkdtemp(prefix="ev-bench-training-"))
    root, held_out, out = work / "dataset", work / "held_out", work / "training"
    counts = build_box_cup_dataset(root, step=args.step, held_out_dir=held_out)
    (root / "train" / "box" / "zz-corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 corrupt")
    print(
        f"dataset: {counts['train']} train + {counts['val']} val images (+1 corrupt), "
        f"{counts['held_out']} held-out frames; {work}"
    )
    # One folder with both classes' held-out frames for the video source (box then cup).
    playlist = work / "playlist"
    playlist.mkdir()
    for f in sorted(held_out.glob("*/*.jpg")):
        (playlist / f.name).symlink_to(f)

    ros = RosClient("bench_training")
    procs: list[NodeProcess] = []
    ns = "bench_train"
    try:
        procs.append(
            NodeProcess(
                "video_source",
                namespace=ns,
                parameters={"uri": str(playlist), "loop": True, "realtime": True, "fps": 10.0},
                log_dir=work,
            )
        )
        procs.append(
            NodeProcess("classifier", namespace=ns, remappings={"image": "image_raw"}, log_dir=work)
        )
        trainer = NodeProcess(
            "trainer",
            namespace=ns,
            parameters={
                "dataset": str(root),
                "output_dir": str(out),
                "width": args.size,
                "height": args.size,
                "batch_size": args.batch,
                "epochs": args.epochs,
                "threads": args.threads,
                "freeze_backbone": args.freeze,
                "learning_rate": args.lr,
                "classifier_node": "classifier",
            },
            log_dir=work,
        )
        procs.append(trainer)
        results = ros.subscribe(Classification, f"/{ns}/classification")
        results.wait_for(5, timeout=120)
        time.sleep(10.0)  # a baseline of classification gaps without training
        base = list(results.arrival_ns)
        progress = ros.subscribe(
            TrainingProgress, f"{trainer.fqn}/progress", qos=QoSProfile(depth=1000)
        )
        time.sleep(1.0)
        t0 = time.time_ns()
        reply = ros.call(Trigger, f"{trainer.fqn}/start", timeout=30)
        assert reply.success, reply.message
        print(f"start: {reply.message}")
        wait_until(
            lambda: (
                bool(progress.messages) and progress.messages[-1].state in ("finished", "failed")
            ),
            3600,
            "training end",
        )
        t_end = time.time_ns()
        final = progress.messages[-1]
        assert final.state == "finished", final.message
        during = [t for t in results.arrival_ns if t0 <= t <= t_end]

        rows, first_09 = [], None
        for msg, at in zip(progress.messages, progress.arrival_ns, strict=True):
            # Epoch-end reports only (step reports carry the previous epoch's val accuracy).
            if msg.message.startswith(f"epoch {msg.epoch}/") and msg.val_accuracy > 0:
                minutes = (at - t0) / 60e9
                if first_09 is None and msg.val_accuracy >= 0.9:
                    first_09 = (msg.epoch, minutes)
                rows.append(
                    [
                        str(msg.epoch),
                        f"{msg.loss:.4f}",
                        f"{msg.train_accuracy:.3f}",
                        f"{msg.val_accuracy:.3f}",
                        f"{minutes:.2f}",
                    ]
                )
        print_table(["epoch", "loss", "train acc", "val acc", "minutes since start"], rows)
        print(f"skipped images: {final.skipped_images}; best model: {final.best_model}")
        if first_09 is not None:
            print(f"val accuracy >= 0.9 after epoch {first_09[0]}, {first_09[1]:.2f} min")
        else:
            print("val accuracy never reached 0.9")
        bg, dg = gaps_s(base), gaps_s(during)
        print_table(
            ["classifications", "messages", "median interval s", "largest gap s"],
            [
                [
                    "before training (10 s)",
                    str(len(base)),
                    f"{statistics.median(bg):.3f}",
                    f"{max(bg):.3f}",
                ],
                [
                    f"during training ({(t_end - t0) / 1e9:.0f} s)",
                    str(len(during)),
                    f"{statistics.median(dg):.3f}",
                    f"{max(dg):.3f}",
                ],
            ],
        )

        # Hot reload: the classifier now names box/cup; score every held-out frame through it.
        wait_until(lambda: "classifier serves" in trainer.output(), 120, "hot load")
        (info,) = ros.collect(LabelInfo, f"/{ns}/labels", 1, timeout=10, qos=latched_qos())
        labels = labels_from_label_info(info)
        assert labels == ["box", "cup"], labels
        procs[0].stop()  # the video source: from now on only our frames reach the classifier
        pub = ros.node.create_publisher(Image, f"/{ns}/image_raw", QoSProfile(depth=5))
        time.sleep(1.0)
        correct, total, latencies = 0, 0, []
        for i, path in enumerate(sorted(held_out.glob("*/*.jpg"))):
            truth = path.parent.name
            msg = numpy_to_image(cv2.imread(str(path)), "bgr8", frame_id="camera", stamp=i + 1)
            results.clear()
            sent = time.monotonic()
            pub.publish(msg)
            wait_until(
                lambda s=i + 1: any(stamp_to_ns(m.header.stamp) == s for m in results.messages),
                10,
                f"result for {path.name}",
            )
            latencies.append(time.monotonic() - sent)
            got = next(m for m in results.messages if stamp_to_ns(m.header.stamp) == i + 1)
            top = labels[int(max(got.results, key=lambda r: r.score).class_id)]
            correct += top == truth
            total += 1
        print(
            f"held-out frames through the hot-loaded classifier: {correct}/{total} correct "
            f"({correct / total:.3f}); median round trip "
            f"{statistics.median(latencies) * 1e3:.0f} ms"
        )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        for proc in reversed(procs):
            proc.stop()
        ros.close()


if __name__ == "__main__":
    main()
