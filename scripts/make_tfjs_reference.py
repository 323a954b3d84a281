#!/usr/bin/env python3
"""Produce test/data/tfjs_reference_dog.npz: outputs of the real TF.js runtime on a real image.

The ONNX graphs made by edge_vision.models.tfjs_to_onnx are checked against these in
test/unit/test_coco_detectors.py. The reference run uses TF.js itself (tfjs-core, tfjs-converter
and the pure-JS CPU backend from npm, pinned below) under node, through scripts/tfjs_reference.js;
no TensorFlow and nothing of ours takes part in computing the outputs.

Command used (from the repository root; needs node/npm, which installs the pinned TF.js packages
into a temporary directory, and darknet's dog.jpg: /usr/share/darknet/data/dog.jpg from Debian
`darknet`, or the same file out of `apt-get download darknet && dpkg -x darknet_*.deb DIR`):
    .venv/bin/python scripts/make_tfjs_reference.py \
        --image /usr/share/darknet/data/dog.jpg --out test/data/tfjs_reference_dog.npz
The output is reproducible bit for bit (checked: two runs gave identical arrays).

Stored per model: the uint8 model-input image as PNG (so the test needs no JPEG decoder or resize to
agree with ours), the normalisation that makes the float input from it, and for each output a
deterministic subset of elements (every k-th plus the largest) with their flat indices.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_vision.models.detector import normalize_input, resize_to_input  # noqa: E402
from edge_vision.models.human_models import SPECS, VERSION, ensure_model  # noqa: E402

TFJS_VERSION = "4.22.0"
TFJS_PACKAGES = [
    f"@tensorflow/tfjs-core@{TFJS_VERSION}",
    f"@tensorflow/tfjs-converter@{TFJS_VERSION}",
    f"@tensorflow/tfjs-backend-cpu@{TFJS_VERSION}",
]
SAMPLED = 4000  # evenly spaced elements kept per output
LARGEST = 200  # plus the largest-magnitude elements, where the decoding happens


def install_tfjs(prefix: Path) -> Path:
    subprocess.run(
        [
            "npm",
            "install",
            "--no-audit",
            "--no-fund",
            "--silent",
            "--prefix",
            str(prefix),
            *TFJS_PACKAGES,
        ],
        check=True,
    )
    return prefix / "node_modules"


def run_tfjs(
    node_modules: Path, model_json: Path, x: np.ndarray, work: Path
) -> tuple[dict, list[np.ndarray]]:
    inp = work / "input.f32"
    x.astype("<f4").tofile(inp)
    out_dir = work / "out"
    env = {**os.environ, "NODE_PATH": str(node_modules)}
    cmd = ["node", str(ROOT / "scripts" / "tfjs_reference.js"), str(model_json), str(inp)]
    subprocess.run([*cmd, ",".join(map(str, x.shape)), str(out_dir)], check=True, env=env)
    meta = json.loads((out_dir / "outputs.json").read_text())
    outs = [
        np.fromfile(out_dir / f"{i}.f32", "<f4").reshape(o["shape"])
        for i, o in enumerate(meta["outputs"])
    ]
    return meta, outs


def subset(values: np.ndarray) -> np.ndarray:
    flat = values.reshape(-1)
    step = max(1, flat.size // SAMPLED)
    top = np.argsort(-np.abs(flat), kind="stable")[:LARGEST]
    return np.unique(np.concatenate([np.arange(0, flat.size, step), top])).astype(np.int32)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image", type=Path, default=Path("/usr/share/darknet/data/dog.jpg"))
    parser.add_argument(
        "--out", type=Path, default=ROOT / "test" / "data" / "tfjs_reference_dog.npz"
    )
    parser.add_argument(
        "--node-modules", type=Path, help="existing node_modules with the TF.js packages"
    )
    args = parser.parse_args()

    bgr = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read {args.image}")
    arrays: dict[str, np.ndarray] = {}
    info: dict[str, object] = {
        "image": args.image.name,
        "human_models": VERSION,
        "tfjs": TFJS_VERSION,
    }
    with tempfile.TemporaryDirectory(prefix="tfjs-ref-") as tmp:
        work = Path(tmp)
        node_modules = args.node_modules or install_tfjs(work / "npm")
        for name, spec in SPECS.items():
            model = ensure_model(name)
            image, _ = resize_to_input(bgr, spec)
            meta, outs = run_tfjs(node_modules, model.tfjs_json, normalize_input(image, spec), work)
            info[f"{name}_runtime"] = {
                "tfjs_core": meta["tfjs_version"],
                "backend": meta["backend"],
            }
            # PNG: lossless and a third smaller than the compressed raw array.
            ok, png = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
            if not ok:
                raise RuntimeError("PNG encoding failed")
            arrays[f"{name}__input_png"] = png.reshape(-1)
            names = []
            for i, (out_meta, values) in enumerate(zip(meta["outputs"], outs, strict=True)):
                # Output names as the ONNX graph has them: the TF tensor name without ":0".
                names.append(out_meta["name"].removesuffix(":0"))
                idx = subset(values)
                arrays[f"{name}__out{i}__idx"] = idx
                arrays[f"{name}__out{i}__val"] = values.reshape(-1)[idx]
                arrays[f"{name}__out{i}__shape"] = np.array(values.shape, np.int64)
            info[f"{name}_outputs"] = names
    arrays["info_json"] = np.array(json.dumps(info))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): {json.dumps(info)}")


if __name__ == "__main__":
    main()
