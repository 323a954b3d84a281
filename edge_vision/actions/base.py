"""The action plugin base: ``Action`` with typed properties, ``EventFilter`` and the context.

An action is a class with a ``type_name`` and typed properties declared as annotated class
attributes::

    class Beep(EventFilter, Action):
        \"\"\"Beep when a matching event starts.\"\"\"

        type_name = "beep"
        volume: int = prop(5, "Loudness 0..10.", min=0, max=10)
        sound: str = "beep.wav"  # a plain default works too (no description)

        def on_event(self, event: Event, args: Mapping[str, Any]) -> None:
            play(self.setting("sound", args), self.volume)

Supported property types: ``str``, ``int``, ``float``, ``bool`` and ``list[str]``. Only public
annotated attributes *with a class-level value* become properties; ``ClassVar`` and names with
a leading underscore are left alone, as are annotations without a value (instance attributes).
A subclass may change an inherited property's default by assigning a plain value
(``cooldown_s = 1.0``); the description and limits are kept.

Values are validated when set: an ``int`` is accepted for a ``float`` (converted), a ``bool``
is never accepted as a number, ``min``/``max`` bound numbers and ``choices`` restrict a value
(every item, for ``list[str]``). Errors are ``ValueError`` naming ``instance.property``.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol, runtime_checkable

from edge_vision.events.model import Event, EventState

__all__ = [
    "Action",
    "ActionContext",
    "ActionError",
    "EventFilter",
    "LoggingContext",
    "PropertySpec",
    "event_fields",
    "format_event",
    "prop",
]

_TYPES: dict[Any, type] = {str: str, int: int, float: float, bool: bool}
_TYPE_NAMES = {str: "str", int: "int", float: "float", bool: "bool", list: "list[str]"}


class ActionError(Exception):
    """An action failed in a way worth one clear log line (no traceback needed)."""


@dataclass(frozen=True)
class PropertySpec:
    """One typed property of an action type. ``type`` is str, int, float, bool or list
    (meaning ``list[str]``); ``choices`` applies to each item of a list."""

    name: str
    type: type
    default: Any
    description: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None

    @property
    def type_name(self) -> str:
        """The type as text: str, int, float, bool or list[str] (docs, parameter types)."""
        return _TYPE_NAMES[self.type]

    def coerce(self, value: Any, owner: str = "") -> Any:
        """``value`` converted to this property's type and validated, else ValueError."""
        where = f"{owner}.{self.name}" if owner else self.name
        t = self.type
        if t is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{where}: expected bool, got {value!r}")
            out: Any = value
        elif t is int:
            # bool is an int subclass; True as a count is almost always a mistake.
            if isinstance(value, bool):
                raise ValueError(f"{where}: expected int, got bool {value!r}")
            if isinstance(value, float) and value.is_integer():
                value = int(value)  # YAML/JSON may spell 2 as 2.0
            if not isinstance(value, int):
                raise ValueError(f"{where}: expected int, got {value!r}")
            out = int(value)
        elif t is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{where}: expected float, got {value!r}")
            out = float(value)
        elif t is str:
            if not isinstance(value, str):
                raise ValueError(f"{where}: expected str, got {value!r}")
            out = value
        else:  # list[str]
            # A bare string is rejected rather than split: "person" would become p,e,r,...
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                raise ValueError(f"{where}: expected a list of strings, got {value!r}")
            if not all(isinstance(v, str) for v in value):
                raise ValueError(f"{where}: expected a list of strings, got {value!r}")
            out = list(value)
        if t in (int, float):
            if self.min is not None and out < self.min:
                raise ValueError(f"{where}: {out} is below the minimum {self.min}")
            if self.max is not None and out > self.max:
                raise ValueError(f"{where}: {out} is above the maximum {self.max}")
        if self.choices is not None:
            for item in out if t is list else [out]:
                if item not in self.choices:
                    allowed = ", ".join(repr(c) for c in self.choices)
                    raise ValueError(f"{where}: {item!r} is not one of {allowed}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (for docs and the dashboard)."""
        return {
            "name": self.name,
            "type": self.type_name,
            "default": list(self.default) if self.type is list else self.default,
            "description": self.description,
            "min": self.min,
            "max": self.max,
            "choices": None if self.choices is None else list(self.choices),
        }


class _Declared:
    """What ``prop()`` returns: a default plus metadata, turned into a ``_Property`` (with
    its type from the annotation) when the class is created."""

    __slots__ = ("choices", "default", "description", "max", "min")

    def __init__(
        self,
        default: Any,
        description: str,
        min: float | None,
        max: float | None,
        choices: Sequence[Any] | None,
    ) -> None:
        self.default = default
        self.description = description
        self.min = min
        self.max = max
        self.choices = None if choices is None else tuple(choices)


def prop(
    default: Any,
    description: str = "",
    *,
    min: float | None = None,
    max: float | None = None,
    choices: Sequence[Any] | None = None,
) -> Any:
    """Declare a typed property: ``url: str = prop("", "URL to POST to")``.

    Typed ``Any`` so that the annotation, not this call, is what type checkers see."""
    return _Declared(default, description, min, max, choices)


class _Property:
    """Data descriptor holding one property's per-instance value (class default until set)."""

    def __init__(self, spec: PropertySpec) -> None:
        self.spec = spec

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = obj.__dict__.get("_property_values", {}).get(self.spec.name, self.spec.default)
        # Lists are copied so that callers cannot mutate the stored value or the default.
        return list(value) if self.spec.type is list else value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.set_property(self.spec.name, value)


def _property_type(name: str, hint: Any, owner: str) -> type:
    if hint in _TYPES:
        return _TYPES[hint]
    if typing.get_origin(hint) is list and typing.get_args(hint) == (str,):
        return list
    raise TypeError(
        f"{owner}.{name}: unsupported property type {hint!r} (use str, int, float, bool or "
        "list[str]; mark other class attributes ClassVar or give them a leading underscore)"
    )


def _class_value(cls: type, name: str) -> tuple[type, Any] | None:
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass, klass.__dict__[name]
    return None


def _inherited_spec(cls: type, klass: type, name: str) -> PropertySpec | None:
    """The spec of ``name`` declared further up ``cls``'s MRO than ``klass``, if any."""
    mro = cls.__mro__
    for base in mro[mro.index(klass) + 1 :]:
        value = base.__dict__.get(name)
        if isinstance(value, _Property):
            return value.spec
    return None


def _collect_properties(cls: type) -> None:
    """Turn the annotated attributes of ``cls`` and its bases into ``_Property`` descriptors
    and record their specs, base classes' properties first, in declaration order."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception as exc:
        raise TypeError(f"{cls.__qualname__}: cannot evaluate annotations: {exc}") from exc
    specs: dict[str, PropertySpec] = {}
    for name, hint in hints.items():
        if name.startswith("_") or typing.get_origin(hint) is ClassVar or hint is ClassVar:
            continue
        found = _class_value(cls, name)
        if found is None:
            continue  # annotation only: an ordinary instance attribute
        klass, value = found
        if isinstance(value, _Property):
            specs[name] = value.spec
            continue
        base_spec = _inherited_spec(cls, klass, name)
        if isinstance(value, _Declared):
            ptype = _property_type(name, hint, cls.__qualname__)
            spec = PropertySpec(
                name, ptype, value.default, value.description, value.min, value.max, value.choices
            )
        elif base_spec is not None:
            spec = replace(base_spec, default=value)  # a subclass changing a default
        elif callable(value) or isinstance(value, (property, classmethod, staticmethod)):
            continue
        else:
            spec = PropertySpec(name, _property_type(name, hint, cls.__qualname__), value)
        # Validate the default once, at class creation, so a bad declaration fails early.
        spec = replace(spec, default=spec.coerce(spec.default, cls.__qualname__))
        setattr(cls, name, _Property(spec))
        specs[name] = spec
    cls._property_specs = specs  # type: ignore[attr-defined]


@runtime_checkable
class ActionContext(Protocol):
    """What an action may ask of the process hosting it (the actions node implements it)."""

    logger: Any  # logging.Logger-like: debug/info/warning/error(msg)

    def publish_alert(self, action: str, text: str, event: Event) -> None:
        """Publish an alert text for ``event`` raised by action instance ``action``."""
        ...

    def request_recording(
        self, event: Event, duration_s: float, max_duration_s: float, pre_s: float
    ) -> str:
        """Start (or extend) a clip for ``event``; returns the clip path. Raises ActionError
        with a message saying why not (e.g. the recorder service is not available)."""
        ...


class LoggingContext:
    """A context for tests and pure-Python use: alerts go to the log, no recorder."""

    def __init__(self, logger: Any = None) -> None:
        self.logger = logger if logger is not None else logging.getLogger("edge_vision.actions")

    def publish_alert(self, action: str, text: str, event: Event) -> None:
        self.logger.warning(f"ALERT [{action}] {text}")

    def request_recording(
        self, event: Event, duration_s: float, max_duration_s: float, pre_s: float
    ) -> str:
        raise ActionError("no recorder in this process")


def event_fields(event: Event, **extra: Any) -> dict[str, Any]:
    """The names a template can use: ``Event.to_dict()`` plus ``duration_s`` and ``extra``."""
    fields = event.to_dict()
    fields["duration_s"] = event.duration_s
    fields.update(extra)
    return fields


def format_event(template: str, event: Event, **extra: Any) -> str:
    """``template.format(**event_fields(event, **extra))``; a bad template is an ActionError."""
    try:
        return template.format(**event_fields(event, **extra))
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ActionError(f"bad template {template!r}: {type(exc).__name__}: {exc}") from exc


class Action:
    """Base class of every action. Subclasses set ``type_name``, declare properties and
    implement ``on_event``; the runner calls ``on_event`` on one worker thread per instance."""

    type_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    _property_specs: ClassVar[dict[str, PropertySpec]] = {}

    once_per_event: bool = prop(True, "Fire at most once per event id.")
    cooldown_s: float = prop(
        0.0, "Minimum seconds between two firings of this action instance.", min=0.0, max=86400.0
    )
    enabled: bool = prop(True, "Fire this instance; false pauses it (events skipped, counted).")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "description" not in cls.__dict__:
            doc = (cls.__doc__ or "").strip()
            cls.description = doc.splitlines()[0].strip() if doc else ""
        _collect_properties(cls)

    def __init__(self, name: str, context: ActionContext) -> None:
        self.name = name
        self.context = context
        # setdefault: a subclass may have set properties before calling super().__init__.
        self._property_values: dict[str, Any] = self.__dict__.get("_property_values", {})

    @property
    def logger(self) -> Any:
        return self.context.logger

    # -- the plugin interface -----------------------------------------------------------------

    def on_event(self, event: Event, args: Mapping[str, Any]) -> str | None:
        """Act on ``event``; ``args`` are the rule's per-firing arguments (may override
        properties, see ``setting``). Raise ActionError (or anything) on failure. May return a
        short detail string (e.g. a clip path) that the runner reports to ``on_done``."""
        raise NotImplementedError

    def accepts(self, event: Event) -> bool:
        """Whether this instance wants ``event`` at all (checked before queueing)."""
        return True

    def validate_property(self, name: str, value: Any) -> None:
        """Extra checks after type coercion; raise ValueError to reject ``value``."""

    def close(self) -> None:
        """Release resources (connections, files). Called once, after the last on_event."""

    # -- properties ---------------------------------------------------------------------------

    @classmethod
    def properties(cls) -> dict[str, PropertySpec]:
        """Property specs by name, base class properties first."""
        return dict(cls._property_specs)

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """JSON-ready description of this action type (docs, dashboard)."""
        return {
            "type": cls.type_name,
            "description": cls.description,
            "properties": [spec.to_dict() for spec in cls._property_specs.values()],
        }

    def _spec(self, name: str) -> PropertySpec:
        spec = self._property_specs.get(name)
        if spec is None:
            known = ", ".join(self._property_specs)
            raise ValueError(f"{self.name}: no property {name!r} (properties: {known})")
        return spec

    def set_property(self, name: str, value: Any) -> None:
        """Coerce, validate and store one property value (ValueError naming instance.name)."""
        spec = self._spec(name)
        coerced = spec.coerce(value, self.name)
        try:
            self.validate_property(name, coerced)
        except ValueError as exc:
            raise ValueError(f"{self.name}.{name}: {exc}") from exc
        self.__dict__.setdefault("_property_values", {})[name] = coerced

    def set_properties(self, values: Mapping[str, Any]) -> None:
        """Set several properties; all are validated before any is stored."""
        staged: dict[str, Any] = {}
        for name, value in values.items():
            spec = self._spec(name)
            staged[name] = spec.coerce(value, self.name)
            try:
                self.validate_property(name, staged[name])
            except ValueError as exc:
                raise ValueError(f"{self.name}.{name}: {exc}") from exc
        self.__dict__.setdefault("_property_values", {}).update(staged)

    def get_property(self, name: str) -> Any:
        self._spec(name)
        return getattr(self, name)

    def property_values(self) -> dict[str, Any]:
        """Current value of every property."""
        return {name: getattr(self, name) for name in self._property_specs}

    def setting(self, name: str, args: Mapping[str, Any] | None) -> Any:
        """``args[name]`` coerced to property ``name``'s type when the rule gives it, else the
        property's current value."""
        spec = self._spec(name)
        if args and name in args:
            value = spec.coerce(args[name], f"{self.name} (rule argument)")
            try:
                self.validate_property(name, value)
            except ValueError as exc:
                raise ValueError(f"{self.name} (rule argument).{name}: {exc}") from exc
            return value
        return getattr(self, name)

    @classmethod
    def check_args(cls, args: Mapping[str, Any], owner: str = "") -> dict[str, Any]:
        """Rule arguments coerced to their property types; ValueError for an unknown name
        or a bad value. Lets a rule loader reject bad arguments at load time."""
        out: dict[str, Any] = {}
        where = owner or cls.type_name or cls.__qualname__
        for name, value in args.items():
            spec = cls._property_specs.get(name)
            if spec is None:
                known = ", ".join(cls._property_specs)
                raise ValueError(f"{where}: no property {name!r} (properties: {known})")
            out[name] = spec.coerce(value, where)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


_collect_properties(Action)  # __init_subclass__ does not run for the class defining it


class EventFilter(Action):
    """Mixin adding event filter properties; ``accepts`` applies them (all must pass)."""

    labels: list[str] = prop([], "Event labels to act on; empty = all.")
    min_score: float = prop(0.0, "Minimum max_score of the event.", min=0.0, max=1.0)
    min_frames: int = prop(0, "Minimum number of frames the event has lasted.", min=0)
    streams: list[str] = prop([], "Streams to act on; empty = all.")
    states: list[str] = prop(
        [],
        "Event states to act on (NEW, UPDATE, END); empty = all.",
        choices=tuple(s.name for s in EventState),
    )

    def accepts(self, event: Event) -> bool:
        labels = self.labels
        if labels and event.label not in labels:
            return False
        streams = self.streams
        if streams and event.stream not in streams:
            return False
        states = self.states
        if states and event.state.name not in states:
            return False
        if event.max_score < self.min_score or event.frames < self.min_frames:
            return False
        return super().accepts(event)
