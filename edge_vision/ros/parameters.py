"""Node parameters declared once, with descriptors, and honoured at run time.

A node lists its parameters as :class:`Param` specs. :class:`ParameterBinding` declares them with
full descriptors (type, range, description, read-only, allowed values), validates every set
request (rclpy enforces ranges; choices and custom validators are checked here), and calls the
node's ``on_change`` after a successful set so the new value takes effect while it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

ParamValue = bool | int | float | str | list[str] | list[int] | list[float]
Validator = Callable[[Any], str | None]
"""Returns an error message for an invalid value, None when it is fine."""

_TYPES: dict[type, int] = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}


@dataclass(frozen=True)
class Param:
    name: str
    default: ParamValue
    description: str
    range: tuple[float, float] | None = None
    """Inclusive (min, max) for int/float parameters; enforced by rclpy."""
    choices: Sequence[str] | None = None
    read_only: bool = False
    validator: Validator | None = None
    list_type: type | None = None
    """Element type when ``default`` is a list (needed for empty defaults)."""

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(
            name=self.name,
            type=self.ros_type,
            description=self.description,
            read_only=self.read_only,
        )
        if self.choices:
            d.additional_constraints = "one of: " + ", ".join(self.choices)
        if self.range is not None:
            lo, hi = self.range
            if isinstance(self.default, bool):
                raise TypeError(f"{self.name}: a bool parameter cannot have a range")
            if isinstance(self.default, int):
                d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
            else:
                d.floating_point_range = [
                    FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)
                ]
        return d

    @property
    def ros_type(self) -> int:
        if isinstance(self.default, list):
            elem = self.list_type or (type(self.default[0]) if self.default else str)
            return {
                str: ParameterType.PARAMETER_STRING_ARRAY,
                int: ParameterType.PARAMETER_INTEGER_ARRAY,
                float: ParameterType.PARAMETER_DOUBLE_ARRAY,
                bool: ParameterType.PARAMETER_BOOL_ARRAY,
            }[elem]
        return _TYPES[type(self.default)]

    def check(self, value: Any) -> str | None:
        if self.choices is not None and value not in self.choices:
            return f"{self.name}: {value!r} is not one of {', '.join(self.choices)}"
        if self.validator is not None:
            return self.validator(value)
        return None


class ParameterBinding:
    """Declares ``specs`` on ``node`` and keeps ``values`` current.

    ``on_change(changed)`` runs after a successful set with the new values by name; it runs in
    the executor thread that served the set request.
    """

    def __init__(
        self,
        node: Node,
        specs: Sequence[Param],
        on_change: Callable[[Mapping[str, Any]], None] | None = None,
        namespace: str = "",
    ) -> None:
        self._node = node
        self._prefix = f"{namespace}." if namespace else ""
        self.specs = {self._prefix + s.name: s for s in specs}
        self._on_change = on_change
        self.values: dict[str, Any] = {}
        for full_name, spec in self.specs.items():
            value = self._declare(full_name, spec)
            error = spec.check(value)
            if error:
                raise ValueError(f"invalid parameter {error}")
            self.values[spec.name] = value
        node.add_on_set_parameters_callback(self._validate)
        node.add_post_set_parameters_callback(self._applied)

    def _declare(self, full_name: str, spec: Param) -> Any:
        try:
            param = self._node.declare_parameter(
                full_name, _as_parameter_value(spec), spec.descriptor()
            )
        except InvalidParameterValueException as exc:  # outside the declared range
            given = self._node._parameter_overrides.get(full_name)  # rclpy has no public API
            shown = given.value if given is not None else "?"
            lo, hi = spec.range or ("?", "?")
            raise ValueError(
                f"invalid parameter {full_name}: {shown!r} is outside [{lo}, {hi}]"
            ) from exc
        except InvalidParameterTypeException as exc:
            # YAML reads `fps: 10` as an int; a double parameter takes it as 10.0 instead of
            # refusing to start. Any other mismatch is a configuration error.
            override = self._node._parameter_overrides.get(full_name)  # rclpy has no public API
            given = None if override is None else override.value
            if not (isinstance(spec.default, float) and type(given) is int):
                raise ValueError(
                    f"invalid parameter {full_name}: expected {type(spec.default).__name__}, "
                    f"got {given!r}"
                ) from exc
            param = self._node.declare_parameter(
                full_name, float(given), spec.descriptor(), ignore_override=True
            )
        return spec.default if param.value is None else param.value

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def close(self) -> None:
        """Undeclare the parameters and drop the callbacks (an instance removed at run time).
        Must not run inside a parameter callback: rclpy iterates the callback lists then."""
        self._node.remove_on_set_parameters_callback(self._validate)
        self._node.remove_post_set_parameters_callback(self._applied)
        for full_name in self.specs:
            if self._node.has_parameter(full_name):
                self._node.undeclare_parameter(full_name)
        self.specs = {}
        self._on_change = None

    def _validate(self, params: list[Parameter]) -> SetParametersResult:
        for p in params:
            spec = self.specs.get(p.name)
            if spec is None:
                continue
            error = spec.check(p.value)
            if error:
                return SetParametersResult(successful=False, reason=error)
        return SetParametersResult(successful=True)

    def _applied(self, params: list[Parameter]) -> None:
        changed: dict[str, Any] = {}
        for p in params:
            spec = self.specs.get(p.name)
            if spec is None:
                continue
            self.values[spec.name] = p.value
            changed[spec.name] = p.value
        if changed and self._on_change is not None:
            self._on_change(changed)


def _as_parameter_value(spec: Param) -> Any:
    # rclpy infers the type from the default value; an empty list needs an explicit type.
    if isinstance(spec.default, list) and not spec.default:
        return Parameter.Type(spec.ros_type)
    return spec.default
