"""torchvision's 18-layer video ResNets (r3d_18, mc3_18, r2plus1d_18) without torchvision.

The networks of Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action
Recognition" (CVPR 2018), laid out with exactly the module names and parameter shapes of
``torchvision.models.video.resnet``, so that a state dict saved from torchvision (the
Kinetics-400 ``r3d_18-b3b3357e.pth``, ``mc3_18-a90a0ba3.pth``, ``r2plus1d_18-91a641e6.pth``,
or a fine-tuned copy with another number of classes) loads with ``strict=True``. torchvision
itself is not needed: the only build of it here is a 5.5 GB CUDA wheel.

Layout (all three): ``stem``, ``layer1``..``layer4`` of two basic residual blocks each (64,
128, 256, 512 channels; layers 2-4 halve the resolution and start with a 1x1x1 ``downsample``
convolution + batch norm), ``avgpool`` and ``fc`` (512 -> classes). The variants differ in the
3x3 convolutions:

* r3d_18: full 3x3x3 everywhere; the stem is a (3, 7, 7) convolution.
* mc3_18: 3x3x3 in layer1, then (1, 3, 3) ("no temporal"): time is never downsampled.
* r2plus1d_18: each 3x3x3 factored into a (1, 3, 3) spatial convolution to ``mid`` channels,
  batch norm, ReLU and a (3, 1, 1) temporal one, ``mid`` chosen to keep the parameter count
  of the 3x3x3 convolution; the stem is factored the same way (3 -> 45 -> 64 channels).

Preprocessing of torchvision's Kinetics weights (its ``VideoClassification`` preset): RGB
frames scaled to [0, 1], resized to 128x171 (H x W, aspect ratio not kept) with bilinear
interpolation, center crop 112x112, normalised with :data:`MEAN` / :data:`STD`, stacked as
(N, 3, T, H, W) with T = 16. torchvision's training recipe resized without antialiasing, which
``cv2.INTER_LINEAR`` matches.

torch is imported only by the functions that need it: the constants work without it (the
runtime side runs the exported ONNX model with onnxruntime).
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_vision.models.errors import ModelLoadError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "ARCHS",
    "CLIP_LEN",
    "CROP_SIZE",
    "INPUT_NAME",
    "INPUT_SIZE",
    "MEAN",
    "NUM_CLASSES",
    "OPSET",
    "OUTPUT_NAME",
    "PREPROCESS",
    "RESIZE_HW",
    "STD",
    "build",
    "export_from_torchvision_weights",
    "export_onnx",
    "load_state_dict_file",
    "load_weights",
]

ARCHS = ("r3d_18", "mc3_18", "r2plus1d_18")
NUM_CLASSES = 400  # Kinetics-400, in torchvision's category order
CLIP_LEN = 16
CROP_SIZE = 112
INPUT_SIZE = CROP_SIZE
RESIZE_HW = (128, 171)
MEAN = (0.43216, 0.394666, 0.37645)
STD = (0.22803, 0.22145, 0.216989)
INPUT_NAME = "clip"
OUTPUT_NAME = "logits"
OPSET = 17
PREPROCESS = (
    "RGB in [0, 1], resize to 128x171 (HxW, bilinear, no antialias), center crop 112x112, "
    f"normalise mean {MEAN} std {STD}, layout (N, 3, T, H, W)"
)

# Per arch: the stem ("3d": one (3,7,7) conv; "2+1d": factored) and the conv kind of layer1..4.
_LAYOUT: dict[str, tuple[str, tuple[str, str, str, str]]] = {
    "r3d_18": ("3d", ("3d", "3d", "3d", "3d")),
    "mc3_18": ("3d", ("3d", "2d", "2d", "2d")),
    "r2plus1d_18": ("2+1d", ("2+1d", "2+1d", "2+1d", "2+1d")),
}
_WIDTHS = (64, 128, 256, 512)
_BLOCKS_PER_LAYER = 2


def _check_arch(arch: str) -> str:
    if arch not in _LAYOUT:
        raise ValueError(f"unknown video ResNet arch {arch!r}; expected one of {ARCHS}")
    return arch


def _mid_channels(inplanes: int, planes: int) -> int:
    # torchvision's choice for (2+1)D: as many mid channels as keep the parameter count of
    # the 3x3x3 conv (in*out*27 = mid*(in*9 + 3*out)). Computed from the block's input and
    # output widths and used for BOTH convs of the block, also the planes->planes one.
    return (inplanes * planes * 27) // (inplanes * 9 + 3 * planes)


@functools.cache
def _modules() -> Any:
    """The torch module classes, defined on first use so that importing this file needs no
    torch."""
    from torch import nn

    def conv3x3(kind: str, cin: int, cout: int, mid: int, stride: int) -> nn.Module:
        if kind == "3d":
            return nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)
        if kind == "2d":
            return nn.Conv3d(
                cin, cout, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False
            )
        # (2+1)D: a Sequential, so its parameters are named <conv>.0 / .1 (bn) / .3.
        return nn.Sequential(
            nn.Conv3d(
                cin, mid, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False
            ),
            nn.BatchNorm3d(mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid, cout, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
        )

    class BasicBlock(nn.Module):
        """Two 3x3(x3) convs with batch norm and an identity (or 1x1x1 projected) shortcut."""

        def __init__(self, kind: str, inplanes: int, planes: int, stride: int) -> None:
            super().__init__()
            mid = _mid_channels(inplanes, planes)
            self.conv1 = nn.Sequential(
                conv3x3(kind, inplanes, planes, mid, stride),
                nn.BatchNorm3d(planes),
                nn.ReLU(inplace=True),
            )
            self.conv2 = nn.Sequential(
                conv3x3(kind, planes, planes, mid, 1), nn.BatchNorm3d(planes)
            )
            self.relu = nn.ReLU(inplace=True)
            self.downsample: nn.Module | None = None
            if stride != 1 or inplanes != planes:
                # "2d" convs keep time, so their shortcut must not stride over it either.
                ds_stride = (1, stride, stride) if kind == "2d" else (stride,) * 3
                self.downsample = nn.Sequential(
                    nn.Conv3d(inplanes, planes, 1, stride=ds_stride, bias=False),
                    nn.BatchNorm3d(planes),
                )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            shortcut = x if self.downsample is None else self.downsample(x)
            return self.relu(self.conv2(self.conv1(x)) + shortcut)

    class VideoResNet(nn.Module):
        """stem -> layer1..4 -> global average pool -> fc; input (N, 3, T, H, W)."""

        def __init__(self, arch: str, num_classes: int) -> None:
            super().__init__()
            stem_kind, kinds = _LAYOUT[arch]
            self.arch = arch
            if stem_kind == "3d":
                self.stem = nn.Sequential(
                    nn.Conv3d(3, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
                    nn.BatchNorm3d(64),
                    nn.ReLU(inplace=True),
                )
            else:
                self.stem = nn.Sequential(
                    nn.Conv3d(3, 45, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
                    nn.BatchNorm3d(45),
                    nn.ReLU(inplace=True),
                    nn.Conv3d(45, 64, (3, 1, 1), stride=1, padding=(1, 0, 0), bias=False),
                    nn.BatchNorm3d(64),
                    nn.ReLU(inplace=True),
                )
            inplanes = 64
            for i, (kind, planes) in enumerate(zip(kinds, _WIDTHS, strict=True)):
                blocks = []
                for b in range(_BLOCKS_PER_LAYER):
                    stride = 2 if i > 0 and b == 0 else 1
                    blocks.append(BasicBlock(kind, inplanes, planes, stride))
                    inplanes = planes
                setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.avgpool = nn.AdaptiveAvgPool3d(1)
            self.fc = nn.Linear(512, num_classes)
            self._init_weights()

        def _init_weights(self) -> None:
            # torchvision's initialisation, so that a freshly built model behaves like one
            # (activation scales, logits near 0) before weights are loaded.
            for m in self.modules():
                if isinstance(m, nn.Conv3d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm3d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0.0, 0.01)
                    nn.init.zeros_(m.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stem(x)
            x = self.layer1(x)
            x = self.layer2(x)
            x = self.layer3(x)
            x = self.layer4(x)
            return self.fc(self.avgpool(x).flatten(1))

    return VideoResNet


def build(arch: str, num_classes: int = NUM_CLASSES) -> nn.Module:
    """A randomly initialised ``arch`` network (torchvision's init), in eval mode."""
    _check_arch(arch)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return _modules()(arch, num_classes).eval()


def _expected_shapes(arch: str, num_classes: int) -> dict[str, tuple[int, ...]]:
    import torch

    # On the meta device: shapes only, no memory, no init cost.
    with torch.device("meta"):
        model = _modules()(arch, num_classes)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict saved with ``torch.save`` (safely: ``weights_only=True``).

    Also accepts the checkpoints of torchvision's video training script and similar
    (``{"model": state_dict, ...}`` or ``{"state_dict": ...}``) and strips the ``module.``
    prefix that ``DataParallel`` adds.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such weights file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"{path}: not a loadable state dict (torch.load weights_only=True: {first_line}). "
            "Save the weights with torch.save(model.state_dict(), path)."
        ) from exc
    if isinstance(obj, torch.nn.Module):  # not possible with weights_only, but be explicit
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise ModelLoadError(f"{path}: expected a state dict, found {type(obj).__name__}")
    for wrapper in ("model", "state_dict", "model_state_dict"):
        inner = obj.get(wrapper)
        if isinstance(inner, Mapping) and not isinstance(obj.get("fc.weight"), torch.Tensor):
            obj = inner
            break
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ModelLoadError(
                f"{path}: expected a state dict of tensors, found {key!r}: {type(value).__name__}"
            )
        state[key] = value
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def _first(items: list[str], n: int = 5) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def _best_matching_arch(state: Mapping[str, torch.Tensor], num_classes: int) -> str | None:
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    for arch in ARCHS:
        if _expected_shapes(arch, num_classes) == shapes:
            return arch
    return None


def load_weights(
    arch: str,
    state_dict_path: str | Path,
    num_classes: int | None = None,
) -> nn.Module:
    """``arch`` with the weights of a torchvision state dict file, in eval mode.

    ``num_classes`` None takes the class count from the file's ``fc.weight`` (400 for
    torchvision's Kinetics weights, another number for a fine-tuned model). Loading is strict;
    any missing, unexpected or mis-shaped tensor raises :class:`ModelLoadError` naming the arch,
    the file and the first few offenders. Only ``num_batches_tracked`` (unused at inference,
    absent from very old checkpoints) may be missing.
    """
    import torch

    _check_arch(arch)
    path = Path(state_dict_path)
    state = load_state_dict_file(path)
    fc = state.get("fc.weight")
    if num_classes is None:
        num_classes = fc.shape[0] if fc is not None and fc.ndim == 2 else NUM_CLASSES
    expected = _expected_shapes(arch, num_classes)

    for key in expected:
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.tensor(0, dtype=torch.long)
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mis_shaped = [
        f"{key} {tuple(state[key].shape)} != {shape}"
        for key, shape in expected.items()
        if key in state and tuple(state[key].shape) != shape
    ]
    if missing or unexpected or mis_shaped:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing: {_first(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected: {_first(unexpected)}")
        if mis_shaped:
            problems.append(f"{len(mis_shaped)} mis-shaped (file != {arch}): {_first(mis_shaped)}")
        other = _best_matching_arch(state, num_classes)
        hint = f"; the file matches {other} exactly" if other and other != arch else ""
        raise ModelLoadError(
            f"{path}: not a torchvision {arch} state dict ({num_classes} classes): "
            + "; ".join(problems)
            + hint
        )

    # Built on the meta device and the loaded tensors assigned: skips the random init of
    # ~33M parameters (seconds on a small CPU) and a second copy of the weights. float32 and
    # contiguous, as a half-precision or sliced file would otherwise end up in the model.
    with torch.device("meta"):
        model = _modules()(arch, num_classes)
    model.load_state_dict(
        {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()},
        strict=True,
        assign=True,
    )
    return model.eval()


# The legacy (TorchScript) exporter's deprecation notice says nothing about this model.
_EXPORT_NOISE = re.compile(r"legacy TorchScript-based ONNX export|will be removed")


def export_onnx(
    model: nn.Module, dest: str | Path, clip_len: int = CLIP_LEN, size: int = CROP_SIZE
) -> Path:
    """Write ``model`` as ONNX (opset 17) to ``dest`` atomically; return ``dest``.

    Input ``clip`` float32 (1, 3, clip_len, size, size), output ``logits`` float32
    (1, classes); shapes are static, so onnxruntime can plan every 3D convolution ahead. The
    preprocessing and arch are recorded in the file's metadata.
    """
    import onnx
    import torch

    if clip_len < 1 or size < 1:
        raise ValueError(f"clip_len and size must be >= 1, got {clip_len}, {size}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    was_training = model.training
    model.eval()  # batch norm must use its running statistics in the graph
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=f".*({_EXPORT_NOISE.pattern})")
            # dynamo=False: the torch.export-based exporter needs onnxscript, which is not
            # installed; the TorchScript exporter handles these plain CNNs exactly.
            torch.onnx.export(
                model,
                (torch.zeros(1, 3, clip_len, size, size),),
                str(tmp),
                dynamo=False,
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                do_constant_folding=True,
            )
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto)
        arch = getattr(model, "arch", "unknown")
        classes = getattr(getattr(model, "fc", None), "out_features", None)
        labels = (
            "Kinetics-400, torchvision category order"
            if classes == NUM_CLASSES
            else f"{classes} classes"
        )
        for key, value in (
            ("edge_vision.model", str(arch)),
            ("edge_vision.preprocess", PREPROCESS),
            ("edge_vision.clip_len", str(clip_len)),
            ("edge_vision.labels", labels),
        ):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        tmp.write_bytes(proto.SerializeToString())
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
        model.train(was_training)
    return dest


def export_from_torchvision_weights(
    arch: str,
    state_dict_path: str | Path,
    dest: str | Path,
    clip_len: int = CLIP_LEN,
    verify: bool = True,
) -> Path:
    """Turn a torchvision video ResNet state dict into an ONNX file (for
    ``edge-vision models import``); return ``dest``.

    With ``verify`` the exported file is run once with onnxruntime on a random clip and
    compared with torch (a few seconds on a small CPU); a mismatch raises ModelLoadError and
    leaves no file behind.
    """
    model = load_weights(arch, state_dict_path)
    dest = export_onnx(model, dest, clip_len=clip_len, size=CROP_SIZE)
    if verify:
        try:
            diff, scale = _compare_with_onnxruntime(model, dest, clip_len, CROP_SIZE)
        except Exception:
            dest.unlink(missing_ok=True)
            raise
        if diff > 1e-3 * max(1.0, scale):
            dest.unlink(missing_ok=True)
            raise ModelLoadError(
                f"{dest}: ONNX export of {arch} differs from torch by {diff:.3g} "
                f"(logits up to {scale:.3g})"
            )
    return dest


def _compare_with_onnxruntime(
    model: nn.Module, onnx_path: Path, clip_len: int, size: int
) -> tuple[float, float]:
    """Max |torch - onnxruntime| over the logits of one random clip, and max |logits|."""
    import numpy as np
    import onnxruntime as ort
    import torch

    clip = np.random.default_rng(0).standard_normal((1, 3, clip_len, size, size), np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(clip)).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: clip})
    return float(np.abs(got - expected).max()), float(np.abs(expected).max())
