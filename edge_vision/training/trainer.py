"""The training job: fine-tune EfficientNet-Lite0 on a dataset folder, in a process of its own.

:class:`TrainingProcess` (parent side, no torch import) starts :func:`run_training` in a
``multiprocessing`` *spawn* child, so that training never holds the parent's GIL or its
executor: a node keeps serving while a job runs. The child lowers its priority (``nice``) and
uses ``threads`` torch threads, so inference on the same CPU keeps its share. A child whose
parent died (SIGKILL) notices within a second and stops.

The child reports through a queue, as plain dicts (``type`` key):

- ``started``: labels, multi_label, train/val sizes, first epoch;
- ``step``: epoch, step, steps, loss (running mean), train_accuracy (running), skipped_images;
- ``epoch``: the same plus val_accuracy, best_val_accuracy and ``exported`` (the new best ONNX
  model's path, or "");
- ``warning``: message (an unreadable image, once per file);
- ``end``: state ``finished``, ``stopped`` or ``failed``, and a message.

After every epoch the child writes ``<output_dir>/checkpoint.pt`` (model, optimiser, epoch, best
accuracy) and ``checkpoint.json`` (the same facts without tensors, read by the parent without
torch), both atomically. ``resume`` continues after the last completed epoch; a stop in the middle
of an epoch loses only that epoch's steps.

When an epoch's val accuracy beats every earlier one (strictly), the model is exported to
``<output_dir>/models/<run>-e<epoch>/`` holding ``model.onnx``, ``labels.txt`` and ``model.yaml``
(the sidecar manifest :func:`edge_vision.models.zoo.resolve` reads: preprocessing, softmax or
sigmoid decoder, sha256), written in a temporary folder and renamed into place, so a loader
never sees a half-written model; ``<output_dir>/best`` is a symlink to the newest one.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing as mp
import os
import queue as queue_mod
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edge_vision.models.classifier import ClassifierSpec, normalize_batch, resize_for_input
from edge_vision.models.efficientnet_lite import INPUT_NAME, MEAN, MODEL_NAME, OUTPUT_NAME
from edge_vision.models.efficientnet_lite import STD as LITE_STD
from edge_vision.models.files import sha256_file
from edge_vision.training.dataset import Sample, list_samples

__all__ = [
    "NETS",
    "OPTIMIZERS",
    "TrainConfig",
    "TrainPlan",
    "TrainingError",
    "TrainingProcess",
    "plan_training",
    "read_checkpoint_info",
    "run_training",
]

NETS = (MODEL_NAME,)
OPTIMIZERS = ("adam", "sgd")
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_INFO = "checkpoint.json"
FEATURES = 1280  # EfficientNet-Lite0's pooled feature width (its _fc input)


class TrainingError(ValueError):
    """A job that cannot start or continue; the message says why. Nothing was changed."""


@dataclass(frozen=True)
class TrainConfig:
    dataset: str
    output_dir: str
    net: str = MODEL_NAME
    width: int = 224
    height: int = 224
    batch_size: int = 16
    workers: int = 0
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    augmentation: bool = True
    epochs: int = 10
    multi_label_threshold: float = 0.5
    freeze_backbone: bool = False
    """Train only the new classification layer (faster; less accurate on hard data)."""
    threads: int = 1
    """torch threads in the training process."""
    nice: int = 10
    """Priority decrease of the training process (inference keeps its CPU share)."""
    seed: int = 0

    def check(self) -> None:
        if self.net not in NETS:
            raise TrainingError(f"net {self.net!r} is not one of {', '.join(NETS)}")
        if self.optimizer not in OPTIMIZERS:
            raise TrainingError(f"optimizer {self.optimizer!r} is not adam or sgd")
        for name, lo in (("width", 32), ("height", 32), ("batch_size", 1), ("epochs", 1)):
            if int(getattr(self, name)) < lo:
                raise TrainingError(f"{name} {getattr(self, name)} must be >= {lo}")
        if self.workers < 0 or self.threads < 1:
            raise TrainingError("workers must be >= 0 and threads >= 1")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise TrainingError(f"learning_rate {self.learning_rate} must be > 0")
        if not 0.0 < self.multi_label_threshold < 1.0:
            raise TrainingError("multi_label_threshold must be in (0, 1)")
        if not self.dataset:
            raise TrainingError("no dataset folder given")
        if not self.output_dir:
            raise TrainingError("no output_dir given")

    @property
    def spec(self) -> ClassifierSpec:
        """Preprocessing shared by training and the exported model (the classifier's own)."""
        return ClassifierSpec(
            name="train",
            input_size=(self.width, self.height),
            channel_order="RGB",
            mean=MEAN,
            std=LITE_STD,
        )


@dataclass
class TrainPlan:
    labels: list[str]
    multi_label: bool
    train: list[Sample]
    val: list[Sample]
    start_epoch: int = 1
    """1-based epoch the job starts with (> 1 when resuming)."""
    checkpoint: dict[str, Any] = field(default_factory=dict)


def read_checkpoint_info(output_dir: str | Path) -> dict[str, Any] | None:
    path = Path(output_dir) / CHECKPOINT_INFO
    if not path.is_file() or not (Path(output_dir) / CHECKPOINT).is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def plan_training(config: TrainConfig, resume: bool = False) -> TrainPlan:
    """Check the config and dataset (and the checkpoint when resuming) without torch.

    Raises :class:`TrainingError` for anything that would make the job fail at once: no
    images, fewer than two classes, an empty val split, no checkpoint, a checkpoint of other
    labels or input size, all epochs already done.
    """
    config.check()
    root = Path(config.dataset).expanduser()
    if not root.is_dir():
        raise TrainingError(f"dataset {root}: no such folder")
    samples = list_samples(root)
    train = [s for s in samples if s.split == "train"]
    val = [s for s in samples if s.split == "val"]
    labels = sorted({t for s in samples for t in s.tags})
    multi_label = any(len(s.tags) > 1 for s in samples)
    if not train:
        raise TrainingError(f"dataset {root}: no images in train/")
    if not val:
        raise TrainingError(f"dataset {root}: no images in val/ (record some with split 'val')")
    if len(labels) < 2:
        raise TrainingError(f"dataset {root}: needs at least 2 tags, has {labels}")
    plan = TrainPlan(labels, multi_label, train, val)
    if resume:
        info = read_checkpoint_info(config.output_dir)
        if info is None:
            raise TrainingError(f"nothing to resume: no checkpoint in {config.output_dir}")
        if info.get("labels") != labels or bool(info.get("multi_label")) != multi_label:
            raise TrainingError(
                f"the dataset's tags changed since the checkpoint ({info.get('labels')} -> "
                f"{labels}): start a new training instead"
            )
        for key in ("net", "width", "height"):
            if info.get("config", {}).get(key) != getattr(config, key):
                raise TrainingError(
                    f"{key} is {getattr(config, key)!r} but the checkpoint was trained with "
                    f"{info.get('config', {}).get(key)!r}"
                )
        done = int(info.get("epoch", 0))
        if done >= config.epochs:
            raise TrainingError(
                f"the checkpoint already completed {done} of {config.epochs} epochs; raise "
                "epochs to train on"
            )
        plan.start_epoch = done + 1
        plan.checkpoint = info
    return plan


# ------------------------------------------------------------------------------------------
# parent side
# ------------------------------------------------------------------------------------------


class TrainingProcess:
    """Runs one training job at a time in a spawned process; poll() returns its reports."""

    def __init__(self) -> None:
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._queue: Any = None
        self._stop: Any = None
        self._ended = True

    @property
    def running(self) -> bool:
        return self._proc is not None and not self._ended

    def start(self, config: TrainConfig, resume: bool = False) -> TrainPlan:
        """Start a job (TrainingError, nothing started, when it cannot run)."""
        if self.running:
            raise TrainingError("a training job is already running (stop it first)")
        plan = plan_training(config, resume)
        self._reap()
        self._queue = self._ctx.Queue()
        self._stop = self._ctx.Event()
        self._proc = self._ctx.Process(
            target=run_training,
            args=(asdict(config), resume, self._queue, self._stop, os.getpid()),
            name="edge_vision-training",
            # Not a daemon: daemons may not start DataLoader workers (``workers`` > 0). The
            # child watches its parent instead and stops when it is gone.
            daemon=False,
        )
        self._proc.start()
        self._ended = False
        return plan

    def stop(self) -> bool:
        """Ask the job to stop after its current step; False when none runs."""
        if not self.running:
            return False
        self._stop.set()
        return True

    def poll(self) -> list[dict[str, Any]]:
        """Reports since the last call; an ``end`` report is made up when the process died."""
        out: list[dict[str, Any]] = []
        if self._queue is None:
            return out
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue_mod.Empty:
                break
            except (EOFError, OSError):
                break
        if any(r.get("type") == "end" for r in out):
            self._ended = True
        elif not self._ended and self._proc is not None and not self._proc.is_alive():
            # Killed (OOM, signal) before it could say so: one last drain, then report it.
            time.sleep(0.1)
            with contextlib.suppress(queue_mod.Empty, EOFError, OSError):
                while True:
                    out.append(self._queue.get_nowait())
            if not any(r.get("type") == "end" for r in out):
                out.append(
                    {
                        "type": "end",
                        "state": "failed",
                        "message": f"training process exited with code {self._proc.exitcode}",
                    }
                )
            self._ended = True
        return out

    def close(self, timeout: float = 10.0) -> None:
        """Stop the job and wait for it (terminate after ``timeout``)."""
        if self._proc is None:
            return
        if self._proc.is_alive():
            if not self._ended:
                self._stop.set()
            self._proc.join(timeout)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(5.0)
        self._ended = True
        self._reap()

    def _reap(self) -> None:
        if self._proc is not None and not self._proc.is_alive():
            self._proc.join(0)
            self._proc = None


# ------------------------------------------------------------------------------------------
# child side (imports torch)
# ------------------------------------------------------------------------------------------


def run_training(
    config_dict: dict[str, Any], resume: bool, reports: Any, stop: Any, parent: int
) -> None:
    """Entry point of the training process (spawn target); never raises. ``parent``: the
    starting process's pid (passed, not read here: it may be dead before this runs)."""
    config = TrainConfig(**{f.name: config_dict[f.name] for f in fields(TrainConfig)})

    def report(kind: str, **values: Any) -> None:
        reports.put({"type": kind, **values})

    orphaned = threading.Event()

    def watch_parent() -> None:
        # Polling, not stop.wait(): a process that dies while waiting on a multiprocessing
        # Event leaves a "sleeper" behind, and the other side's set() then blocks forever.
        while not stop.is_set():
            if os.getppid() != parent:  # the node died without stopping us: stop, do not linger
                orphaned.set()
                stop.set()
            time.sleep(1.0)

    threading.Thread(target=watch_parent, name="watch-parent", daemon=True).start()
    try:
        with contextlib.suppress(OSError):
            os.nice(config.nice)
        state, message = _Job(config, resume, report, stop).run()
    except KeyboardInterrupt:  # Ctrl-C in the terminal reaches the whole process group
        state, message = "stopped", "interrupted"
    except TrainingError as exc:
        state, message = "failed", str(exc)
    except Exception as exc:
        traceback.print_exc()
        state, message = "failed", f"{type(exc).__name__}: {exc}"
    report("end", state=state, message=message)
    if orphaned.is_set():
        # Nobody reads the queue any more: waiting for it to drain would hang forever.
        reports.cancel_join_thread()
    else:
        reports.close()
        reports.join_thread()  # let the feeder thread flush before the process exits


class _ImageSet:
    """torch-style dataset: (input tensor or None, target, path); None for unreadable files."""

    def __init__(
        self,
        samples: Sequence[Sample],
        labels: Sequence[str],
        multi_label: bool,
        spec: ClassifierSpec,
        augment: bool,
    ) -> None:
        self.samples = list(samples)
        self.index = {t: i for i, t in enumerate(labels)}
        self.n = len(labels)
        self.multi_label = multi_label
        self.spec = spec
        self.augment = augment

    def __len__(self) -> int:
        return len(self.samples)

    def target(self, sample: Sample) -> Any:
        if self.multi_label:
            y = np.zeros(self.n, np.float32)
            for t in sample.tags:
                y[self.index[t]] = 1.0
            return y
        return self.index[sample.tags[0]]

    def __getitem__(self, i: int) -> tuple[Any, Any, str]:
        import cv2
        import torch

        sample = self.samples[i]
        image = cv2.imread(str(sample.path), cv2.IMREAD_COLOR)
        if image is None or image.size == 0:
            return None, self.target(sample), str(sample.path)
        if self.augment:
            # torch's generator: DataLoader seeds it per worker, so workers differ.
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
            image = augment(image, np.random.default_rng(seed))
        x = normalize_batch(resize_for_input(image, self.spec)[None], self.spec)[0]
        return torch.from_numpy(x), self.target(sample), str(sample.path)


def augment(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random resized crop (60-100 % of the area), horizontal flip, brightness and contrast."""
    h, w = bgr.shape[:2]
    area = rng.uniform(0.6, 1.0) * h * w
    aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    cw = int(min(w, round(math.sqrt(area * aspect))))
    ch = int(min(h, round(math.sqrt(area / aspect))))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    out = bgr[y0 : y0 + ch, x0 : x0 + cw]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    gain = rng.uniform(0.8, 1.2)
    bias = rng.uniform(-20.0, 20.0)
    return np.clip(out.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)


def _collate(batch: list[tuple[Any, Any, str]]) -> tuple[Any, Any, list[str]]:
    """Stack the readable items; the unreadable ones' paths travel along to be reported."""
    import torch

    bad = [path for x, _, path in batch if x is None]
    good = [(x, y) for x, y, _ in batch if x is not None]
    if not good:
        return None, None, bad
    xs = torch.stack([x for x, _ in good])
    ys = [y for _, y in good]
    y = torch.from_numpy(np.stack(ys)) if isinstance(ys[0], np.ndarray) else torch.tensor(ys)
    return xs, y, bad


class _Job:
    def __init__(self, config: TrainConfig, resume: bool, report: Any, stop: Any) -> None:
        self.config = config
        self.resume = resume
        self.report = report
        self.stop = stop
        self.out = Path(config.output_dir).expanduser()
        self.skipped: set[str] = set()

    def run(self) -> tuple[str, str]:
        import torch

        from edge_vision.models.efficientnet_lite import build_model

        cfg = self.config
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        plan = plan_training(cfg, self.resume)
        self.out.mkdir(parents=True, exist_ok=True)
        labels, multi = plan.labels, plan.multi_label

        model = build_model()
        model._fc = torch.nn.Linear(FEATURES, len(labels))
        if cfg.freeze_backbone:
            for name, p in model.named_parameters():
                p.requires_grad = name.startswith("_fc.")
        params = [p for p in model.parameters() if p.requires_grad]
        if cfg.optimizer == "adam":
            opt: Any = torch.optim.Adam(params, lr=cfg.learning_rate)
        else:
            opt = torch.optim.SGD(params, lr=cfg.learning_rate, momentum=0.9)
        best = -1.0
        best_model = ""
        run_id = time.strftime("%Y%m%d-%H%M%S")
        if self.resume:
            state = torch.load(self.out / CHECKPOINT, map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            for group in opt.param_groups:  # a resumed job takes the current learning rate
                group["lr"] = cfg.learning_rate
            best = float(plan.checkpoint.get("best_val_accuracy", -1.0))
            best_model = str(plan.checkpoint.get("best_model", ""))
            run_id = str(plan.checkpoint.get("run_id", run_id))
            self.skipped = set(plan.checkpoint.get("skipped_files", []))
        else:
            # A fresh start must not be resumable into the old run by accident.
            (self.out / CHECKPOINT_INFO).unlink(missing_ok=True)
            (self.out / CHECKPOINT).unlink(missing_ok=True)

        spec = cfg.spec
        loader_args: dict[str, Any] = {
            "batch_size": cfg.batch_size,
            "num_workers": cfg.workers,
            "collate_fn": _collate,
        }
        train_loader = torch.utils.data.DataLoader(
            _ImageSet(plan.train, labels, multi, spec, cfg.augmentation),  # type: ignore[arg-type]
            shuffle=True,
            drop_last=len(plan.train) > cfg.batch_size,  # a batch of 1 upsets batch norm
            **loader_args,
        )
        val_loader = torch.utils.data.DataLoader(
            _ImageSet(plan.val, labels, multi, spec, False),  # type: ignore[arg-type]
            shuffle=False,
            **loader_args,
        )
        loss_fn: Any = torch.nn.BCEWithLogitsLoss() if multi else torch.nn.CrossEntropyLoss()
        self.report(
            "started",
            labels=labels,
            multi_label=multi,
            train=len(plan.train),
            val=len(plan.val),
            epoch=plan.start_epoch,
            epochs=cfg.epochs,
        )
        steps = len(train_loader)
        for epoch in range(plan.start_epoch, cfg.epochs + 1):
            self._train_mode(model)
            loss_sum, correct, seen = 0.0, 0, 0
            for step, (x, y, bad) in enumerate(train_loader, 1):
                if self.stop.is_set():
                    return "stopped", f"stopped in epoch {epoch}; resume repeats it"
                self._note_bad(bad)
                if x is None:
                    continue
                logits = model(x)
                loss = loss_fn(logits, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                loss_sum += float(loss.detach()) * len(x)
                correct += self._correct(logits.detach(), y, multi)
                seen += len(x)
                self.report(
                    "step",
                    epoch=epoch,
                    epochs=cfg.epochs,
                    step=step,
                    steps=steps,
                    loss=loss_sum / seen,
                    train_accuracy=correct / seen,
                    skipped_images=len(self.skipped),
                )
            val_acc = self._evaluate(model, val_loader, multi)
            if val_acc is None:
                return "stopped", f"stopped in epoch {epoch}; resume repeats it"
            exported = ""
            if val_acc > best:
                best = val_acc
                exported = str(self._export(model, labels, multi, f"{run_id}-e{epoch:03d}"))
                best_model = exported
            self._checkpoint(model, opt, epoch, labels, multi, best, best_model, run_id)
            self.report(
                "epoch",
                epoch=epoch,
                epochs=cfg.epochs,
                step=steps,
                steps=steps,
                loss=loss_sum / max(seen, 1),
                train_accuracy=correct / max(seen, 1),
                val_accuracy=val_acc,
                best_val_accuracy=best,
                best_model=best_model,
                exported=exported,
                skipped_images=len(self.skipped),
            )
        return "finished", f"{cfg.epochs} epochs, best val accuracy {best:.3f}"

    def _train_mode(self, model: Any) -> None:
        model.train()
        if self.config.freeze_backbone:
            # Frozen layers keep their ImageNet batch-norm statistics too.
            for name, module in model.named_children():
                if name != "_fc":
                    module.eval()

    def _note_bad(self, paths: list[str]) -> None:
        for path in paths:
            if path not in self.skipped:
                self.skipped.add(path)
                self.report("warning", message=f"skipping unreadable image {path}")

    def _correct(self, logits: Any, y: Any, multi: bool) -> int:
        if multi:
            pred = logits.sigmoid() >= self.config.multi_label_threshold
            return int((pred == (y >= 0.5)).all(dim=1).sum())  # the whole tag set right
        return int((logits.argmax(dim=1) == y).sum())

    def _evaluate(self, model: Any, loader: Any, multi: bool) -> float | None:
        import torch

        model.eval()
        correct, seen = 0, 0
        with torch.no_grad():
            for x, y, bad in loader:
                if self.stop.is_set():
                    return None
                self._note_bad(bad)
                if x is None:
                    continue
                correct += self._correct(model(x), y, multi)
                seen += len(x)
        return correct / seen if seen else 0.0

    def _export(self, model: Any, labels: list[str], multi: bool, name: str) -> Path:
        """ONNX + labels + sidecar manifest in a temporary folder, renamed into place."""
        import onnx

        from edge_vision.models.efficientnet_lite import write_onnx

        cfg = self.config
        models_dir = self.out / "models"
        models_dir.mkdir(parents=True, exist_ok=True)
        final = models_dir / name
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=models_dir))
        tmp.chmod(0o755)  # mkdtemp makes it private; other users' inference nodes read it
        try:
            onnx_path = tmp / "model.onnx"
            write_onnx(model, onnx_path, cfg.height, cfg.width)
            onnx.checker.check_model(str(onnx_path))
            (tmp / "labels.txt").write_text("".join(f"{t}\n" for t in labels))
            manifest = {
                "format": "edge_vision.model/1",
                "name": f"trained-{name}",
                "task": "classification",
                "description": f"{cfg.net} fine-tuned on {cfg.dataset} ({len(labels)} tags)",
                "licence": "as the dataset's images; backbone weights Apache-2.0",
                "file": "model.onnx",
                "sha256": sha256_file(onnx_path),
                "labels_file": "labels.txt",
                "input": {
                    "name": INPUT_NAME,
                    "size": [cfg.width, cfg.height],
                    "layout": "NCHW",
                    "color_order": "RGB",
                    "mean": list(MEAN),
                    "std": list(LITE_STD),
                    "scale": 1.0,
                },
                "outputs": [OUTPUT_NAME],
                "decoder": {
                    "type": "sigmoid" if multi else "softmax",
                    **({"threshold": cfg.multi_label_threshold} if multi else {}),
                },
                "source": {
                    "imported_from": str(Path(cfg.dataset).resolve()),
                    "imported_by": "edge_vision.training.trainer",
                },
            }
            (tmp / "model.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
            if final.exists():  # an earlier, stopped run of the same id and epoch
                shutil.rmtree(final)
            tmp.rename(final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            self._train_mode(model)
        link = self.out / "best"
        tmp_link = self.out / f".best.{os.getpid()}"
        tmp_link.unlink(missing_ok=True)
        tmp_link.symlink_to(Path("models") / name)
        tmp_link.replace(link)
        return final / "model.onnx"

    def _checkpoint(
        self,
        model: Any,
        opt: Any,
        epoch: int,
        labels: list[str],
        multi: bool,
        best: float,
        best_model: str,
        run_id: str,
    ) -> None:
        import torch

        tmp = self.out / f".{CHECKPOINT}.tmp"
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, tmp)
        tmp.replace(self.out / CHECKPOINT)
        info = {
            "epoch": epoch,
            "labels": labels,
            "multi_label": multi,
            "best_val_accuracy": best,
            "best_model": best_model,
            "run_id": run_id,
            "config": asdict(self.config),
            "skipped_files": sorted(self.skipped),
        }
        tmp_info = self.out / f".{CHECKPOINT_INFO}.tmp"
        tmp_info.write_text(json.dumps(info, indent=1))
        tmp_info.replace(self.out / CHECKPOINT_INFO)
