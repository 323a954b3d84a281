"""torchvision-compatible video ResNets (r3d_18, mc3_18, r2plus1d_18) without torchvision.

No real weights exist offline here, so every model in these tests has RANDOMLY INITIALISED
weights (batch-norm statistics randomised too, so that the normalisation is really exercised):
the tests check structure, loading and export, not accuracy.

The expected state-dict layout is derived independently of edge_vision from torchvision's
``torchvision/models/video/resnet.py``:

* ``VideoResNet``: ``stem``, ``layer1``..``layer4`` (64/128/256/512 planes, ``[2, 2, 2, 2]``
  BasicBlocks, stride 2 in the first block of layers 2-4), ``avgpool``, ``fc`` (512 -> 400).
* ``BasicBlock``: ``conv1 = Sequential(conv_builder(inplanes, planes, midplanes, stride),
  BatchNorm3d, ReLU)``, ``conv2 = Sequential(conv_builder(planes, planes, midplanes),
  BatchNorm3d)``, ``midplanes = (inplanes*planes*27) // (inplanes*9 + 3*planes)``;
  ``downsample = Sequential(Conv3d 1x1x1, BatchNorm3d)`` when the stride or width changes.
* ``Conv3DSimple`` (3,3,3); ``Conv3DNoTemporal`` (1,3,3); ``Conv2Plus1D = Sequential(Conv3d
  (1,3,3) in->mid, BatchNorm3d(mid), ReLU, Conv3d (3,1,1) mid->out)``.
* ``BasicStem = Sequential(Conv3d(3, 64, (3,7,7)), BatchNorm3d, ReLU)``; ``R2Plus1dStem =
  Sequential(Conv3d(3, 45, (1,7,7)), BN, ReLU, Conv3d(45, 64, (3,1,1)), BN, ReLU)``.
* r3d_18: Conv3DSimple x4 + BasicStem; mc3_18: Conv3DSimple + Conv3DNoTemporal x3 + BasicStem;
  r2plus1d_18: Conv2Plus1D x4 + R2Plus1dStem.

Parameter counts are the ``num_params`` of torchvision's weight metadata (R3D_18_Weights etc.).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from edge_vision.models import video_resnet as vr  # noqa: E402
from edge_vision.models.errors import ModelLoadError  # noqa: E402

TORCHVISION_NUM_PARAMS = {"r3d_18": 33371472, "mc3_18": 11695440, "r2plus1d_18": 31505325}

BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

# r3d_18's convolution and fc tensors, written out from the source (the batch norms follow
# each conv: <conv>.1 / downsample.1, with the 5 entries of BN_KEYS each).
R3D_18_CONVS = {
    "stem.0.weight": (64, 3, 3, 7, 7),
    "layer1.0.conv1.0.weight": (64, 64, 3, 3, 3),
    "layer1.0.conv2.0.weight": (64, 64, 3, 3, 3),
    "layer1.1.conv1.0.weight": (64, 64, 3, 3, 3),
    "layer1.1.conv2.0.weight": (64, 64, 3, 3, 3),
    "layer2.0.conv1.0.weight": (128, 64, 3, 3, 3),
    "layer2.0.conv2.0.weight": (128, 128, 3, 3, 3),
    "layer2.0.downsample.0.weight": (128, 64, 1, 1, 1),
    "layer2.1.conv1.0.weight": (128, 128, 3, 3, 3),
    "layer2.1.conv2.0.weight": (128, 128, 3, 3, 3),
    "layer3.0.conv1.0.weight": (256, 128, 3, 3, 3),
    "layer3.0.conv2.0.weight": (256, 256, 3, 3, 3),
    "layer3.0.downsample.0.weight": (256, 128, 1, 1, 1),
    "layer3.1.conv1.0.weight": (256, 256, 3, 3, 3),
    "layer3.1.conv2.0.weight": (256, 256, 3, 3, 3),
    "layer4.0.conv1.0.weight": (512, 256, 3, 3, 3),
    "layer4.0.conv2.0.weight": (512, 512, 3, 3, 3),
    "layer4.0.downsample.0.weight": (512, 256, 1, 1, 1),
    "layer4.1.conv1.0.weight": (512, 512, 3, 3, 3),
    "layer4.1.conv2.0.weight": (512, 512, 3, 3, 3),
    "fc.weight": (400, 512),
    "fc.bias": (400,),
}


def _bn(prefix: str, n: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{k}": (() if k == "num_batches_tracked" else (n,)) for k in BN_KEYS}


def torchvision_state_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """The state-dict keys and shapes torchvision's constructors produce, from the rules in
    the module docstring (no torch involved)."""
    conv_kinds = {
        "r3d_18": ["simple"] * 4,
        "mc3_18": ["simple"] + ["notemporal"] * 3,
        "r2plus1d_18": ["2plus1d"] * 4,
    }[arch]
    shapes: dict[str, tuple[int, ...]] = {}
    if arch == "r2plus1d_18":
        shapes["stem.0.weight"] = (45, 3, 1, 7, 7)
        shapes.update(_bn("stem.1", 45))
        shapes["stem.3.weight"] = (64, 45, 3, 1, 1)
        shapes.update(_bn("stem.4", 64))
    else:
        shapes["stem.0.weight"] = (64, 3, 3, 7, 7)
        shapes.update(_bn("stem.1", 64))

    def conv(prefix: str, kind: str, cin: int, cout: int, mid: int) -> None:
        if kind == "simple":
            shapes[f"{prefix}.weight"] = (cout, cin, 3, 3, 3)
        elif kind == "notemporal":
            shapes[f"{prefix}.weight"] = (cout, cin, 1, 3, 3)
        else:
            shapes[f"{prefix}.0.weight"] = (mid, cin, 1, 3, 3)
            shapes.update(_bn(f"{prefix}.1", mid))
            shapes[f"{prefix}.3.weight"] = (cout, mid, 3, 1, 1)

    inplanes = 64
    for layer, (kind, planes) in enumerate(
        zip(conv_kinds, (64, 128, 256, 512), strict=True), start=1
    ):
        for block in range(2):
            p = f"layer{layer}.{block}"
            mid = (inplanes * planes * 27) // (inplanes * 9 + 3 * planes)
            conv(f"{p}.conv1.0", kind, inplanes, planes, mid)
            shapes.update(_bn(f"{p}.conv1.1", planes))
            conv(f"{p}.conv2.0", kind, planes, planes, mid)
            shapes.update(_bn(f"{p}.conv2.1", planes))
            if block == 0 and (layer > 1 or inplanes != planes):
                shapes[f"{p}.downsample.0.weight"] = (planes, inplanes, 1, 1, 1)
                shapes.update(_bn(f"{p}.downsample.1", planes))
            inplanes = planes
    shapes["fc.weight"] = (400, 512)
    shapes["fc.bias"] = (400,)
    return shapes


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights and batch-norm statistics (a fresh model's BN is an identity)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(int(torch.randint(0, 1000, (1,), generator=gen)))
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 1.5 + 0.5)
            elif name.endswith(("running_mean", ".bias")):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
            elif tensor.ndim == 1:  # BN scale
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:  # conv / fc weights at He scale, so activations stay O(1) through 18 layers
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
    return model.eval()


def shapes_of(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Any, Path]]]:
    """Per arch: (randomised model, path of its saved state dict)."""
    out = {}
    root = tmp_path_factory.mktemp("weights")
    for seed, arch in enumerate(vr.ARCHS):
        model = randomize(vr.build(arch), seed)
        path = root / f"{arch}.pth"
        torch.save(model.state_dict(), path)
        out[arch] = (model, path)
    yield out
    # ~300 MB; pytest keeps the temp dirs of the last runs around.
    for _, path in out.values():
        path.unlink(missing_ok=True)


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, emptied of the (100+ MB) model files afterwards."""
    yield tmp_path
    for file in tmp_path.rglob("*"):
        if file.is_file():
            file.unlink()


# -- layout ---------------------------------------------------------------------------------


def test_r3d_18_literal_table_agrees_with_the_derivation() -> None:
    derived = torchvision_state_shapes("r3d_18")
    for key, shape in R3D_18_CONVS.items():
        assert derived[key] == shape
    bn_prefixes = {k.rsplit(".", 1)[0] for k in derived if k.endswith("running_var")}
    assert len(bn_prefixes) == 20  # stem + 16 block convs + 3 downsamples
    assert len(derived) == len(R3D_18_CONVS) + 5 * len(bn_prefixes) == 122


@pytest.mark.parametrize("arch", vr.ARCHS)
def test_state_dict_layout_matches_torchvision(arch: str) -> None:
    model = vr.build(arch)
    assert shapes_of(model.state_dict()) == torchvision_state_shapes(arch)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == TORCHVISION_NUM_PARAMS[arch]


def test_r2plus1d_mid_channels_come_from_the_block_not_the_conv() -> None:
    # Both convs of layer2.0 use mid = 64*128*27 // (64*9 + 3*128) = 230, although its
    # second conv maps 128 -> 128 (for which the formula alone would give 288).
    state = shapes_of(vr.build("r2plus1d_18").state_dict())
    assert state["layer2.0.conv1.0.0.weight"] == (230, 64, 1, 3, 3)
    assert state["layer2.0.conv2.0.0.weight"] == (230, 128, 1, 3, 3)
    assert state["layer2.1.conv1.0.0.weight"] == (288, 128, 1, 3, 3)
    assert state["layer4.0.conv2.0.3.weight"] == (512, 921, 3, 1, 1)


@pytest.mark.parametrize(("arch", "t_out"), [("r3d_18", 2), ("mc3_18", 16), ("r2plus1d_18", 2)])
def test_temporal_downsampling(arch: str, t_out: int) -> None:
    # mc3_18 never strides over time after layer1 (shortcut included); the others halve it in
    # layers 2-4. A wrong downsample stride would fail the residual add or change T here.
    model = vr.build(arch)
    seen: dict[str, int] = {}

    def hook(module: object, inputs: object, output: torch.Tensor) -> None:
        seen["t"] = output.shape[2]

    model.layer4.register_forward_hook(hook)
    with torch.inference_mode():
        logits = model(torch.zeros(1, 3, 16, 32, 32))
    assert logits.shape == (1, 400)
    assert seen["t"] == t_out


def test_unknown_arch() -> None:
    with pytest.raises(ValueError, match="r3d_18"):
        vr.build("r3d_50")


def test_preprocessing_constants() -> None:
    assert vr.MEAN == (0.43216, 0.394666, 0.37645)
    assert vr.STD == (0.22803, 0.22145, 0.216989)
    assert vr.RESIZE_HW == (128, 171)
    assert vr.CROP_SIZE == vr.INPUT_SIZE == 112
    assert vr.CLIP_LEN == 16


# -- loading --------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", vr.ARCHS)
def test_round_trip_strict(arch: str, saved: dict) -> None:
    model, path = saved[arch]
    loaded = vr.load_weights(arch, path)
    assert not loaded.training
    ref = model.state_dict()
    got = loaded.state_dict()
    assert list(got) == list(ref)
    for key in ref:
        assert torch.equal(got[key], ref[key]), key
    x = torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))


def test_checkpoint_wrappers_and_prefixes(saved: dict, scratch: Path) -> None:
    model, path = saved["mc3_18"]
    state = torch.load(path, weights_only=True)
    variants = {
        "wrapped": {"model": state, "epoch": 3},
        "data_parallel": {f"module.{k}": v for k, v in state.items()},
        # very old checkpoints have no num_batches_tracked (unused at inference)
        "old": {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
    }
    for name, obj in variants.items():
        file = scratch / f"{name}.pth"
        torch.save(obj, file)
        loaded = vr.load_weights("mc3_18", file)
        assert torch.equal(loaded.fc.weight, model.fc.weight), name


def test_fine_tuned_class_count(scratch: Path) -> None:
    model = randomize(vr.build("r3d_18", num_classes=10), 5)
    file = scratch / "ft.pth"
    torch.save(model.state_dict(), file)
    loaded = vr.load_weights("r3d_18", file)
    assert loaded.fc.out_features == 10
    with pytest.raises(ModelLoadError, match=r"fc\.weight \(10, 512\) != \(400, 512\)"):
        vr.load_weights("r3d_18", file, num_classes=400)


def _save_modified(saved: dict, tmp_path: Path, edit: Any) -> Path:
    _, path = saved["r3d_18"]
    state = dict(torch.load(path, weights_only=True))
    edit(state)
    file = tmp_path / "bad.pth"
    torch.save(state, file)
    return file


def test_missing_key_error(saved: dict, scratch: Path) -> None:
    file = _save_modified(saved, scratch, lambda s: s.pop("layer3.1.conv2.1.running_var"))
    with pytest.raises(ModelLoadError) as err:
        vr.load_weights("r3d_18", file)
    msg = str(err.value)
    assert "r3d_18" in msg and str(file) in msg
    assert "1 missing: layer3.1.conv2.1.running_var" in msg
    assert "unexpected" not in msg


def test_extra_key_error(saved: dict, scratch: Path) -> None:
    def edit(state: dict) -> None:
        state["head.weight"] = torch.zeros(3)
        state["layer5.0.conv1.0.weight"] = torch.zeros(3)

    file = _save_modified(saved, scratch, edit)
    with pytest.raises(ModelLoadError, match=r"2 unexpected: head\.weight, layer5\.0\.conv1"):
        vr.load_weights("r3d_18", file)


def test_mis_shaped_key_error(saved: dict, scratch: Path) -> None:
    file = _save_modified(
        saved, scratch, lambda s: s.__setitem__("stem.0.weight", torch.zeros(64, 3, 1, 7, 7))
    )
    with pytest.raises(
        ModelLoadError, match=r"1 mis-shaped .*stem\.0\.weight \(64, 3, 1, 7, 7\) != \(64, 3, 3, 7"
    ):
        vr.load_weights("r3d_18", file)


def test_wrong_arch_names_the_right_one(saved: dict) -> None:
    _, path = saved["r3d_18"]
    # Same keys as mc3_18, different shapes in layers 2-4: reported, and the match named.
    with pytest.raises(ModelLoadError) as err:
        vr.load_weights("mc3_18", path)
    msg = str(err.value)
    assert "mc3_18" in msg and "12 mis-shaped" in msg and "matches r3d_18" in msg
    _, path = saved["r2plus1d_18"]
    with pytest.raises(ModelLoadError, match=r"missing.*unexpected.*matches r2plus1d_18"):
        vr.load_weights("r3d_18", path)


class _NotWeights:
    pass


def test_unloadable_files(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such weights file"):
        vr.load_weights("r3d_18", tmp_path / "absent.pth")
    pickled = tmp_path / "object.pth"
    torch.save({"x": _NotWeights()}, pickled)  # weights_only refuses arbitrary classes
    with pytest.raises(ModelLoadError, match="weights_only"):
        vr.load_weights("r3d_18", pickled)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a zip or pickle")
    with pytest.raises(ModelLoadError, match="not a loadable state dict"):
        vr.load_weights("r3d_18", garbage)
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(ModelLoadError, match="expected a state dict, found Tensor"):
        vr.load_weights("r3d_18", tensor)
    mixed = tmp_path / "mixed.pth"
    torch.save({"fc.weight": torch.zeros(400, 512), "note": "hello"}, mixed)
    with pytest.raises(ModelLoadError, match="'note': str"):
        vr.load_weights("r3d_18", mixed)


# -- ONNX ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("arch", vr.ARCHS)
def test_onnx_export_matches_torch(arch: str, saved: dict, scratch: Path) -> None:
    model, _ = saved[arch]
    dest = vr.export_onnx(model, scratch / f"{arch}.onnx")
    proto = onnx.load(str(dest), load_external_data=False)
    (inp,) = proto.graph.input
    (out,) = proto.graph.output
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert (inp.name, dims) == ("clip", [1, 3, 16, 112, 112])
    assert (out.name, [d.dim_value for d in out.type.tensor_type.shape.dim]) == ("logits", [1, 400])
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["edge_vision.model"] == arch
    assert meta["edge_vision.clip_len"] == "16"
    del proto

    clip = np.random.default_rng(2).standard_normal((1, 3, 16, 112, 112), np.float32)
    with torch.inference_mode():
        t0 = time.perf_counter()
        expected = model(torch.from_numpy(clip)).numpy()
        t_torch = time.perf_counter() - t0
    session = ort.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    t0 = time.perf_counter()
    (got,) = session.run(["logits"], {"clip": clip})
    t_ort = time.perf_counter() - t0
    print(f"{arch}: torch {t_torch * 1e3:.0f} ms, onnxruntime {t_ort * 1e3:.0f} ms per clip")
    scale = float(np.abs(expected).max())
    assert scale > 0.1  # the random weights give non-trivial logits to compare
    assert float(np.abs(got - expected).max()) < 1e-4 * max(1.0, scale)
    # the class ranking, what a caller acts on, is the same
    assert np.argsort(got[0])[-5:].tolist() == np.argsort(expected[0])[-5:].tolist()


@pytest.mark.slow
def test_export_from_torchvision_weights(saved: dict, scratch: Path) -> None:
    _, path = saved["mc3_18"]
    dest = vr.export_from_torchvision_weights(
        "mc3_18", path, scratch / "out" / "mc3.onnx", clip_len=8
    )
    assert dest.is_file()
    assert not list(dest.parent.glob(".*.tmp"))
    session = ort.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 8, 112, 112]
    with pytest.raises(ModelLoadError):
        vr.export_from_torchvision_weights("r3d_18", path, scratch / "bad.onnx")
    assert not (scratch / "bad.onnx").exists()
