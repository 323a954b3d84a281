"""The key vocabulary of rule conditions: which names a condition may test, and how each is read.

Every ``Event`` field is a key under its own name (``bbox`` excepted: four numbers are not one
value to compare). On top of those:

``duration_s``
    ``(end_ns - begin_ns) / 1e9``, in seconds.
``attributes.<name>``
    the event attribute ``<name>`` (a string). A missing attribute makes the condition false
    whatever the operator, so ``attributes.zone != door`` does not match events without a zone.

EDGEMATRIX aliases (all in ``ALIASES`` below, so rules written for EDGEMATRIX Stream load as-is):

``probability`` / ``max_probability``
    ``score`` / ``max_score`` in percent (0..100), rounded to 4 decimals so that a float32 score
    of 0.29 reads as 29 % rather than 28.999999 %.
``tracking_status``
    ``"new"`` | ``"tracking"`` | ``"ended"`` for state NEW / UPDATE / END.
``tracking_duration``
    ``duration_s``.
``object`` / ``class_name``
    ``label``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from edge_vision.events.model import Event, EventState

NUMBER = "number"
TEXT = "text"
STATE = "state"
ATTRIBUTE = "attribute"  # a string that compares numerically when both sides are numbers

ATTRIBUTE_PREFIX = "attributes."

# tracking_status by EventState value (IntEnum, so the state indexes the tuple directly)
TRACKING_STATUS: tuple[str, ...] = ("new", "tracking", "ended")
assert len(TRACKING_STATUS) == len(EventState)


@dataclass(frozen=True)
class KeySpec:
    """How one key is read from an event and which values it compares with."""

    name: str
    kind: str  # NUMBER, TEXT or STATE (attributes get theirs from attribute_spec)
    get: Callable[[Event], Any]
    doc: str
    # For enumerated text keys (tracking_status): the accepted values, lower case.
    choices: tuple[str, ...] = ()
    # YAML reads `value: 7` as an int; ids are numeric-looking strings, so accept ints there.
    int_as_text: bool = False


def _duration_s(event: Event) -> float:
    # Division by 1e9 is correctly rounded, so a 1.3 s event equals the literal 1.3 in a rule;
    # multiplying by 1e-9 (as Event.duration_s does) is one ulp off for ~40 % of millisecond
    # durations, which would make ">= 1.3" miss an event of exactly 1.3 s.
    return (event.end_ns - event.begin_ns) / 1e9


def _percent(field: str) -> Callable[[Event], float]:
    get = attrgetter(field)

    def percent(event: Event) -> float:
        return round(get(event) * 100.0, 4)

    return percent


def _tracking_status(event: Event) -> str:
    return TRACKING_STATUS[event.state]


def _field(name: str, kind: str, doc: str, *, int_as_text: bool = False) -> KeySpec:
    return KeySpec(name, kind, attrgetter(name), doc, int_as_text=int_as_text)


FIELDS: dict[str, KeySpec] = {
    s.name: s
    for s in (
        _field("id", TEXT, "event id"),
        _field("stream", TEXT, "stream (camera) name"),
        _field("model", TEXT, "model that produced the results"),
        _field("label", TEXT, "class name"),
        _field(
            "class_id", TEXT, "class id (a string; integer values are accepted)", int_as_text=True
        ),
        _field("score", NUMBER, "score of the latest result, 0..1"),
        _field("max_score", NUMBER, "highest score so far, 0..1"),
        _field("begin_ns", NUMBER, "stamp of the first frame, ns"),
        _field("end_ns", NUMBER, "stamp of the latest frame, ns"),
        _field("frames", NUMBER, "number of contributing frames"),
        _field("track_id", TEXT, "tracker id, '' when untracked", int_as_text=True),
        _field("state", STATE, "NEW, UPDATE or END (by name, any case, or 0/1/2)"),
        KeySpec("duration_s", NUMBER, _duration_s, "end - begin, seconds"),
    )
}

# EDGEMATRIX names, all in one table. Keep the module docstring in step with it.
ALIASES: dict[str, KeySpec] = {
    s.name: s
    for s in (
        KeySpec("probability", NUMBER, _percent("score"), "score in percent"),
        KeySpec("max_probability", NUMBER, _percent("max_score"), "max_score in percent"),
        KeySpec(
            "tracking_status",
            TEXT,
            _tracking_status,
            "new | tracking | ended (state NEW | UPDATE | END)",
            choices=TRACKING_STATUS,
        ),
        KeySpec("tracking_duration", NUMBER, _duration_s, "duration_s"),
        KeySpec("object", TEXT, attrgetter("label"), "label"),
        KeySpec("class_name", TEXT, attrgetter("label"), "label"),
    )
}

KEYS: dict[str, KeySpec] = {**FIELDS, **ALIASES}

# For error messages and docs: every valid key, attributes last.
KEY_NAMES: tuple[str, ...] = (*KEYS, ATTRIBUTE_PREFIX + "<name>")


def attribute_spec(key: str) -> KeySpec:
    """The spec of ``attributes.<name>``; the getter returns None for a missing attribute."""
    name = key[len(ATTRIBUTE_PREFIX) :]

    def get(event: Event) -> str | None:
        return event.attributes.get(name)

    return KeySpec(key, ATTRIBUTE, get, f"event attribute {name!r}")


def unknown_key_message(key: object) -> str:
    return f"unknown key {key!r} (expected one of {', '.join(KEY_NAMES)})"


def resolve_key(key: str) -> KeySpec | None:
    """The spec for ``key``, or None if it is not in the vocabulary."""
    spec = KEYS.get(key)
    if spec is None and key.startswith(ATTRIBUTE_PREFIX) and len(key) > len(ATTRIBUTE_PREFIX):
        spec = attribute_spec(key)
    return spec


def event_value(event: Event, key: str) -> Any:
    """The value ``key`` reads from ``event``, as conditions see it (None: missing attribute).

    For display and debugging; conditions resolve their getter once at load time instead.
    Raises KeyError for a key outside the vocabulary.
    """
    spec = resolve_key(key) if isinstance(key, str) else None
    if spec is None:
        raise KeyError(unknown_key_message(key))
    return spec.get(event)
