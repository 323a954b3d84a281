"""Hosting a swappable model in a node: load on request, refuse what fails, swap atomically.

Every inference node (detector, classifier, pose) has ``model`` and ``device`` parameters and a
``~/load_model`` service (edge_vision/srv/LoadModel). :class:`ModelHost` gives them one behaviour:

- a parameter set of ``model``/``device`` first loads the new model (the old one keeps serving
  meanwhile); if the load fails the set is refused with the loader's message and nothing changes;
- after a successful set the new model is swapped in between two frames (``current()`` returns
  a consistent (model, name) pair);
- ``~/load_model`` is the same parameter set, so the parameter always names the served model;
- a model that fails at start-up leaves the node up and reporting, fixable without a restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from edge_vision.models.errors import ModelLoadError

Loader = Callable[[str, str], Any]
"""(model, device) -> loaded model; raises ModelLoadError with a clear message."""


class ModelHost:
    def __init__(
        self,
        node: Node,
        loader: Loader,
        devices: tuple[str, ...],
        on_swapped: Callable[[], None] | None = None,
    ) -> None:
        """``node`` must already have declared the ``model`` and ``device`` parameters."""
        self._node = node
        self._loader = loader
        self._devices = devices
        self._on_swapped = on_swapped
        self._lock = threading.Lock()
        self._model: Any = None
        self._name = ""
        self._pending: tuple[Any, str] | None = None
        self.error = ""
        node.add_on_set_parameters_callback(self._load_for_set)
        from edge_vision.srv import LoadModel

        # The node's default (mutually exclusive) callback group, like its parameter services:
        # loads requested both ways are serialised, so they cannot race on the pending model.
        # Frames keep flowing meanwhile: nodes subscribe to images in a group of their own.
        node.create_service(LoadModel, "~/load_model", self._load_model_srv)

    def current(self) -> tuple[Any, str]:
        """The serving model and its name; (None, "") when none is loaded."""
        with self._lock:
            return self._model, self._name

    def load_at_start(self) -> bool:
        model = self._node.get_parameter("model").value
        device = self._node.get_parameter("device").value
        try:
            self._pending = (self._load(model, device), model)
        except ModelLoadError as exc:
            self.error = f"no model loaded: {exc}"
            self._node.get_logger().error(self.error)
            return False
        self._swap()
        return True

    def parameters_changed(self, changed: Mapping[str, Any]) -> bool:
        """Call from the node's post-set hook; True when a new model was swapped in."""
        if not {"model", "device"} & changed.keys():
            return False
        self._swap()
        return True

    # -- internals ----------------------------------------------------------------------------
    def _load(self, model: str, device: str) -> Any:
        try:
            return self._loader(model, device)
        except ModelLoadError:
            raise
        except Exception as exc:  # anything else a broken model file can raise
            raise ModelLoadError(f"cannot load {model!r}: {type(exc).__name__}: {exc}") from exc

    def _swap(self) -> None:
        with self._lock:
            if self._pending is None:
                return
            self._model, self._name = self._pending
            self._pending = None
            self.error = ""
        device = self._node.get_parameter("device").value
        self._node.get_logger().info(f"serving {self._name} on {device}")
        if self._on_swapped is not None:
            self._on_swapped()

    def _load_for_set(self, params: list[Parameter]) -> SetParametersResult:
        values = {p.name: p.value for p in params}
        if not {"model", "device"} & values.keys():
            return SetParametersResult(successful=True)
        self._pending = None  # drop what an earlier, refused set may have loaded
        model = values.get("model", self._node.get_parameter("model").value)
        device = values.get("device", self._node.get_parameter("device").value)
        if device not in self._devices:
            return SetParametersResult(successful=True)  # the parameter binding refuses it
        try:
            self._pending = (self._load(model, device), model)
        except ModelLoadError as exc:
            self._node.get_logger().error(f"keeping {self._name or 'no model'}: {exc}")
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _load_model_srv(self, request: Any, response: Any) -> Any:
        values = [Parameter("model", value=request.model)]
        if request.device:
            values.append(Parameter("device", value=request.device))
        started = time.monotonic()
        result = self._node.set_parameters_atomically(values)
        response.success = result.successful
        response.message = (
            f"loaded {request.model} in {time.monotonic() - started:.2f} s"
            if result.successful
            else result.reason
        )
        response.model = self.current()[1]
        return response
