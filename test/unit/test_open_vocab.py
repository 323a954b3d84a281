"""Open-vocabulary core: prompt validation, box decoding, and the OWL-ViT / OWLv2 backend.

No OWL weights ship in any registry reachable here, so the backend tests use a tiny RANDOMLY
INITIALISED OWL-ViT (and OWLv2) written by ``edge_vision.testing.tiny_owl`` and loaded from its
folder like a downloaded model. Its detections are meaningless; the tests check that the split
model path (text once, image per frame) computes exactly what transformers' own forward and
post-processing compute, the embedding cache, and the refusals.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edge_vision.models.errors import ModelLoadError
from edge_vision.models.open_vocab import (
    DEFAULT_THRESHOLD,
    NanoOwlDetector,
    OwlDetector,
    Prompt,
    PromptError,
    decode_boxes,
    load_open_vocab,
)
from edge_vision.testing.media import require
from edge_vision.testing.tiny_owl import write_tiny_owl

MESSI = Path("/usr/share/doc/opencv-doc/examples/data/messi5.jpg")

# -- Prompt ---------------------------------------------------------------------------------------


def test_parse_objects_and_thresholds() -> None:
    p = Prompt.parse("a person, a hat", "0.1,0.2")
    assert p.objects == ("a person", "a hat")
    assert p.thresholds == (0.1, 0.2)
    assert len(p) == 2 and str(p) == "a person (0.1), a hat (0.2)"


def test_one_threshold_for_all_and_default() -> None:
    assert Prompt.parse("a, b, c", "0.3").thresholds == (0.3, 0.3, 0.3)
    assert Prompt.parse("a, b").thresholds == (DEFAULT_THRESHOLD, DEFAULT_THRESHOLD)
    assert Prompt.create(["x"], [], default_threshold=0.4).thresholds == (0.4,)
    assert Prompt.create([" x "], [1]).objects == ("x",)


@pytest.mark.parametrize(
    ("objects", "thresholds", "max_objects", "reason"),
    [
        ([], [], None, "no objects"),
        (["a", "  "], [0.1], None, "object 2 of 2 is empty"),
        (["a", "b"], [0.1, 0.2, 0.3], None, "3 thresholds for 2 objects"),
        (["a", "b", "c"], [0.1, 0.2], None, "2 thresholds for 3 objects"),
        (["a"], [1.5], None, "outside [0, 1]"),
        (["a", "b"], [0.2, -0.1], None, "threshold 2 (-0.1) is outside"),
        (["a"], [float("nan")], None, "outside [0, 1]"),
        (["a", "b", "c"], [0.1], 2, "3 objects, but at most 2"),
        (["a hat", "a hat"], [0.1], None, "listed twice"),
    ],
)
def test_invalid_prompts_are_refused_with_the_reason(
    objects: list[str], thresholds: list[float], max_objects: int | None, reason: str
) -> None:
    with pytest.raises(PromptError) as info:
        Prompt.create(objects, thresholds, max_objects=max_objects)
    assert reason in str(info.value)


def test_parse_refuses_bad_text() -> None:
    with pytest.raises(PromptError, match="object 2 of 3 is empty"):
        Prompt.parse("a person,, a hat")
    with pytest.raises(PromptError, match=r"threshold 2 \('x'\) is not a number"):
        Prompt.parse("a, b", "0.1, x")
    with pytest.raises(PromptError, match=r"no objects|is empty"):
        Prompt.parse("")


# -- decoding -------------------------------------------------------------------------------------


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def test_decode_keeps_each_box_by_its_best_objects_threshold() -> None:
    prompt = Prompt.create(["a", "b"], [0.5, 0.8])
    logits = np.array(
        [
            [_logit(0.6), _logit(0.1)],  # a 0.6 >= 0.5: kept
            [_logit(0.4), _logit(0.3)],  # a 0.4 < 0.5: dropped
            [_logit(0.2), _logit(0.7)],  # b 0.7 < 0.8: dropped (a is not its best)
            [_logit(0.1), _logit(0.9)],  # b 0.9: kept
        ],
        np.float32,
    )
    boxes = np.array(
        [[0.5, 0.5, 0.2, 0.4], [0.1, 0.1, 0.1, 0.1], [0.3, 0.3, 0.1, 0.1], [0.9, 0.1, 0.4, 0.4]],
        np.float32,
    )
    dets = decode_boxes(logits, boxes, prompt, scale_xy=(200.0, 100.0), image_size=(200, 100))
    assert dets.labels == ["b", "a"]  # best score first
    np.testing.assert_allclose(dets.scores, [0.9, 0.6], rtol=1e-5)
    np.testing.assert_array_equal(dets.class_ids, [1, 0])
    # cxcywh normalised -> pixels; the second box is clipped at the right edge (x 220 -> 200)
    np.testing.assert_allclose(dets.xyxy[1], [80, 30, 120, 70], atol=1e-3)
    np.testing.assert_allclose(dets.xyxy[0], [140, 0, 200, 30], atol=1e-3)


def test_decode_nms_merges_overlaps_of_one_object_only_and_caps_the_count() -> None:
    prompt = Prompt.create(["a", "b"], [0.0])
    logits = np.array([[3.0, -3.0], [2.0, -3.0], [-3.0, 1.0]], np.float32)
    same = [0.5, 0.5, 0.2, 0.2]
    boxes = np.array([same, [0.51, 0.5, 0.2, 0.2], same], np.float32)
    off = decode_boxes(logits, boxes, prompt, (100.0, 100.0), (100, 100), nms_iou=1.0)
    assert len(off) == 3
    on = decode_boxes(logits, boxes, prompt, (100.0, 100.0), (100, 100), nms_iou=0.5)
    assert on.labels == ["a", "b"]  # the second "a" is merged; "b" on the same spot stays
    capped = decode_boxes(logits, boxes, prompt, (100.0, 100.0), (100, 100), max_detections=1)
    assert capped.labels == ["a"]


# -- the transformers backend (tiny random models) ----------------------------------------------


@pytest.fixture(scope="module")
def tiny_owl(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_tiny_owl(tmp_path_factory.mktemp("owlvit")))


@pytest.fixture(scope="module")
def tiny_owlv2(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_tiny_owl(tmp_path_factory.mktemp("owlv2"), kind="owlv2"))


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return cv2.imread(str(require(MESSI)))


@pytest.mark.parametrize("kind", ["owlvit", "owlv2"])
def test_split_path_equals_transformers_forward_and_post_processing(
    kind: str, tiny_owl: str, tiny_owlv2: str, frame: np.ndarray
) -> None:
    from transformers import AutoProcessor

    folder = tiny_owl if kind == "owlvit" else tiny_owlv2
    detector = OwlDetector.load(folder)
    assert detector.model_type == kind and detector.square_pad == (kind == "owlv2")
    prompt = Prompt.create(["a person", "a ball", "grass"], [0.3])
    pixel_values, scale = detector.preprocess(frame)
    h, w = frame.shape[:2]
    assert scale == ((float(max(h, w)),) * 2 if kind == "owlv2" else (float(w), float(h)))

    logits, boxes = detector.heads(pixel_values, detector.text_embeddings(prompt))
    processor = AutoProcessor.from_pretrained(folder)
    tokens = processor.tokenizer(list(prompt.objects), padding="max_length", return_tensors="pt")
    with torch.inference_mode():
        full = detector.model(**tokens, pixel_values=pixel_values)  # text + image, one pass
    np.testing.assert_allclose(logits, full.logits[0].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(boxes, full.pred_boxes[0].numpy(), rtol=1e-5, atol=1e-6)

    # Our decoding = transformers' post-processing (one threshold, no NMS); OWLv2 boxes are
    # relative to the padded square, which is why transformers scales them by the longer side.
    ours = detector.detect(frame, prompt, nms_iou=1.0, max_detections=1000)
    (ref,) = processor.image_processor.post_process_object_detection(
        full, threshold=0.3, target_sizes=[(h, w)]
    )
    ref_boxes = np.clip(ref["boxes"].numpy(), 0, [w, h, w, h])
    ref_ids = ref["labels"].numpy()
    assert len(ours) == len(ref_ids) > 0

    def canonical(xyxy: np.ndarray, ids: np.ndarray) -> np.ndarray:
        # order-free comparison: random weights give equal scores, whose order is arbitrary
        rows = np.column_stack([np.round(xyxy, 1), ids])
        return rows[np.lexsort(rows.T[::-1])]

    np.testing.assert_allclose(
        canonical(ours.xyxy, ours.class_ids), canonical(ref_boxes, ref_ids), atol=0.11
    )
    np.testing.assert_allclose(np.sort(ours.scores), np.sort(ref["scores"].numpy()), rtol=1e-5)
    assert ours.labels == [prompt.objects[i] for i in ours.class_ids]


def test_preprocessing_matches_the_models_own_image_processor(
    tiny_owl: str, tiny_owlv2: str, frame: np.ndarray
) -> None:
    from transformers import AutoImageProcessor

    for folder in (tiny_owl, tiny_owlv2):
        ours, _ = OwlDetector.load(folder).preprocess(frame)
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        ref = AutoImageProcessor.from_pretrained(folder)(images=rgb, return_tensors="pt")
        diff = (ours - ref["pixel_values"]).abs()
        # OpenCV resizing vs PIL/scikit-image style: the same picture, not the same bits
        assert float(diff.mean()) < 0.06, (folder, float(diff.mean()))


def test_text_encoder_runs_once_per_prompt_not_per_frame(tiny_owl: str, frame: np.ndarray) -> None:
    detector = OwlDetector.load(tiny_owl)
    passes: list[int] = []
    # Count real passes through the text transformer (not a mock): a hook of our own on it.
    handle = detector.core.text_model.register_forward_hook(lambda *_: passes.append(1))
    try:
        first = Prompt.create(["a person", "a hat"], [0.2])
        for _ in range(5):
            detector.detect(frame, first)
        assert len(passes) == 1
        second = Prompt.create(["a dog"], [0.2])
        for _ in range(3):
            detector.detect(frame, second)
        assert len(passes) == 2
        # new thresholds, same objects: the same embeddings
        detector.detect(frame, Prompt.create(["a person", "a hat"], [0.9, 0.1]))
        assert len(passes) == 2
        for _ in range(3):  # the uncached path (benchmark baseline) pays every frame
            detector.detect(frame, first, use_cache=False)
        assert len(passes) == 5
        assert detector.text_encoder_runs == len(passes)
    finally:
        handle.remove()


def test_cached_and_uncached_detections_are_identical(tiny_owl: str, frame: np.ndarray) -> None:
    detector = OwlDetector.load(tiny_owl)
    prompt = Prompt.create(["a person", "a hat"], [0.2, 0.4])
    a = detector.detect(frame, prompt)
    b = detector.detect(frame, prompt, use_cache=False)
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    assert a.labels == b.labels and set(a.labels) <= set(prompt.objects)
    for label, score in zip(a.labels, a.scores, strict=True):
        assert score >= dict(zip(prompt.objects, prompt.thresholds, strict=True))[label]


def test_objects_longer_than_the_text_model_reads_are_refused(tiny_owl: str) -> None:
    detector = OwlDetector.load(tiny_owl)  # 24 tokens; this tokenizer splits into characters
    detector.check_prompt(Prompt.create(["x" * 22], [0.1]))  # 22 + start + end = 24
    with pytest.raises(PromptError, match="is 25 tokens long; this model reads at most 24"):
        detector.text_embeddings(Prompt.create(["a", "x" * 23], [0.1]))
    assert detector.text_encoder_runs == 0  # refused before any pass


def test_load_errors_are_clear(tmp_path, tiny_owl: str) -> None:
    with pytest.raises(ModelLoadError, match="no such model folder"):
        OwlDetector.load(str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        OwlDetector.load(str(tmp_path))
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="'bert' is not OWL-ViT or OWLv2"):
        OwlDetector.load(str(other))
    broken = tmp_path / "broken"
    broken.mkdir()
    for src in Path(tiny_owl).iterdir():  # a good folder, but the weights file is corrupt
        (broken / src.name).write_bytes(src.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="cannot load"):
        OwlDetector.load(str(broken))
    with pytest.raises(ModelLoadError, match="unknown device 'tpu'"):
        load_open_vocab(tiny_owl, "tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where CUDA is missing")
def test_cuda_refused_without_a_gpu(tiny_owl: str) -> None:
    with pytest.raises(ModelLoadError, match="no CUDA device"):
        load_open_vocab(tiny_owl, "cuda")


@pytest.mark.skipif(
    importlib.util.find_spec("nanoowl") is not None, reason="NanoOWL is installed here"
)
def test_nanoowl_refused_off_jetson_with_a_clear_error(tiny_owl: str) -> None:
    with pytest.raises(ModelLoadError, match=r"NanoOWL .* not installed here; use device cpu"):
        load_open_vocab(tiny_owl, "jetson", "/some/engine.engine")


@pytest.mark.skipif(
    importlib.util.find_spec("nanoowl") is None,
    reason="NanoOWL (TensorRT on Jetson) is not installed: no GPU, TensorRT or Jetson here",
)
def test_nanoowl_detects_with_cached_text_encodings() -> None:  # pragma: no cover - Jetson only
    engine = os.environ.get("NANOOWL_ENGINE", "")
    if not engine:
        pytest.skip("set NANOOWL_ENGINE to an OWL-ViT image-encoder engine built by NanoOWL")
    detector = NanoOwlDetector("google/owlvit-base-patch32", engine)
    frame = cv2.imread(str(require(MESSI)))
    prompt = Prompt.create(["a person", "a ball"], [0.1])
    for _ in range(3):
        dets = detector.detect(frame, prompt)
    assert detector.text_encoder_runs == 1
    assert set(dets.labels or []) <= set(prompt.objects)


def test_a_hub_id_not_in_the_cache_is_refused_offline(tmp_path: Path) -> None:
    # A subprocess: huggingface_hub reads HF_HUB_OFFLINE and HF_HOME when it is imported.
    code = (
        "from edge_vision.models.open_vocab import OwlDetector\n"
        "try:\n    OwlDetector.load('google/owlvit-base-patch32')\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.stdout.startswith("ModelLoadError cannot load 'google/owlvit-base-patch32'"), (
        done.stdout + done.stderr
    )
