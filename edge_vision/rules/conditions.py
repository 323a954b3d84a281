"""Conditions of a rule, validated and compiled into closures when a rule file loads.

A condition is ``{key: K, operator: OP, value: V}`` or a group ``{and: [...]}`` / ``{or: [...]}``
of conditions. Operators:

``==`` ``!=``
    numbers compare numerically (20 == 20.0), text as text, ``state`` by name (any case) or int.
``>`` ``>=`` ``<`` ``<=``
    numeric keys (and attributes) against a number.
``in`` ``not in``
    the value is a non-empty list; each element is checked as for ``==``.
``contains``
    a text value: substring of a text key (membership when the key's value is a list).

Attribute values are strings; they compare numerically when both sides parse as numbers
("20.0" == 20), and any condition on a missing attribute is false.

Each ``Condition`` and ``Group`` carries ``test(event) -> bool``, built once: the key's getter
is resolved, the operator picked from the ``operator`` module and list values frozen into sets,
so evaluating an event is a couple of C-level calls per condition with no dict building,
parsing or exception handling (numeric comparisons on attributes excepted: they parse the
attribute string).
"""

from __future__ import annotations

import math
import operator as op
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_vision.events.model import Event, EventState
from edge_vision.rules.keys import (
    ATTRIBUTE,
    NUMBER,
    STATE,
    TEXT,
    KeySpec,
    resolve_key,
    unknown_key_message,
)

Test = Callable[[Event], bool]

OPERATORS: tuple[str, ...] = ("==", "!=", ">", ">=", "<", "<=", "in", "not in", "contains")
_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    ">": op.gt,
    ">=": op.ge,
    "<": op.lt,
    "<=": op.le,
}
_EQUALITY: dict[str, Callable[[Any, Any], bool]] = {"==": op.eq, "!=": op.ne}
CONDITION_FIELDS = ("key", "operator", "value")
_KINDS = {NUMBER: "a number", TEXT: "text", STATE: "a state (use == or in)", ATTRIBUTE: "text"}
GROUP_KINDS = ("and", "or")


class FieldError(ValueError):
    """A problem at ``field`` (a path relative to what is being parsed); rules.py adds context."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def under(self, prefix: str) -> FieldError:
        """The same problem with ``prefix`` prepended to its field path."""
        if not prefix:
            return self
        sep = "" if not self.field or self.field.startswith("[") else "."
        return FieldError(f"{prefix}{sep}{self.field}", self.message)


def _always(event: Event) -> bool:
    return True


def _never(event: Event) -> bool:
    return False


def _is_number(value: object) -> bool:
    # bool is an int subclass, but `value: yes` is not a threshold
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_number(text: str) -> float | None:
    """``text`` as a number, or None. The one try/except on the evaluation path."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _describe_type(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"boolean {value!r}"
    if isinstance(value, str):
        return f"text {value!r}"
    if _is_number(value):
        return f"number {value!r}"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


def _format_value(value: object) -> str:
    if isinstance(value, EventState):
        return repr(value.name)
    if isinstance(value, tuple):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return repr(value)


# --- value normalisation per key kind --------------------------------------------------------


def _scalar(spec: KeySpec, op_name: str, value: object, field: str) -> Any:
    """``value`` checked and normalised for an equality test on ``spec``'s key."""
    if spec.kind == NUMBER:
        if not _is_number(value):
            raise FieldError(
                field,
                f"{spec.name!r} is a number; operator {op_name!r} needs a number, "
                f"got {_describe_type(value)}",
            )
        return value
    if spec.kind == STATE:
        if isinstance(value, str):
            try:
                return EventState[value.upper()]
            except KeyError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            try:
                return EventState(value)
            except ValueError:
                pass
        names = ", ".join(s.name for s in EventState)
        raise FieldError(
            field, f"{_describe_type(value)} is not a state (expected one of {names}, any case)"
        )
    if spec.kind == TEXT:
        if spec.int_as_text and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise FieldError(
                field,
                f"{spec.name!r} is text; operator {op_name!r} needs a text value, "
                f"got {_describe_type(value)} (quote it)",
            )
        if spec.choices:
            value = value.lower()
            if value not in spec.choices:
                raise FieldError(
                    field,
                    f"{value!r} is not a {spec.name} (expected one of {', '.join(spec.choices)})",
                )
        return value
    # ATTRIBUTE: text or a number
    if not (isinstance(value, str) or _is_number(value)):
        raise FieldError(
            field,
            f"operator {op_name!r} on an attribute needs text or a number, "
            f"got {_describe_type(value)}",
        )
    return value


def _value_list(spec: KeySpec, op_name: str, value: object) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise FieldError(
            "value",
            f"operator {op_name!r} needs a list value, e.g. [a, b], got {_describe_type(value)}",
        )
    if not value:
        raise FieldError("value", f"operator {op_name!r} needs a non-empty list")
    return tuple(_scalar(spec, op_name, v, f"value[{i}]") for i, v in enumerate(value))


# --- compilation ----------------------------------------------------------------------------


def _attribute_in(get: Callable[[Event], str | None], values: tuple[Any, ...]) -> Test:
    """True when the attribute equals one of ``values``, as text or, for numbers, numerically."""
    texts = frozenset(v if isinstance(v, str) else repr(v) for v in values)
    numbers = frozenset(
        n
        for n in (v if _is_number(v) else _as_number(v) for v in values)
        if n is not None and not math.isnan(n)
    )
    if not numbers:

        def in_texts(event: Event) -> bool:
            return get(event) in texts  # None (missing) is never in the set

        return in_texts

    def in_texts_or_numbers(event: Event) -> bool:
        text = get(event)
        if text is None:
            return False
        return text in texts or _as_number(text) in numbers

    return in_texts_or_numbers


def _negate_present(get: Callable[[Event], str | None], positive: Test) -> Test:
    """``not positive`` for a present attribute; a missing one stays false."""

    def negated(event: Event) -> bool:
        return get(event) is not None and not positive(event)

    return negated


def _compile_attribute(spec: KeySpec, op_name: str, value: Any) -> Test:
    get = spec.get
    if op_name in _ORDERING:
        cmp = _ORDERING[op_name]

        def ordered(event: Event) -> bool:
            text = get(event)
            if text is None:
                return False
            number = _as_number(text)
            return number is not None and cmp(number, value)

        return ordered
    if op_name == "contains":

        def contains(event: Event) -> bool:
            text = get(event)
            return text is not None and value in text

        return contains
    values = value if op_name in ("in", "not in") else (value,)
    positive = _attribute_in(get, values)
    return positive if op_name in ("==", "in") else _negate_present(get, positive)


def _compile_plain(spec: KeySpec, op_name: str, value: Any) -> Test:
    get = spec.get
    if op_name in ("in", "not in"):
        members = frozenset(value)
        if op_name == "in":
            return lambda event: get(event) in members
        return lambda event: get(event) not in members
    if op_name == "contains":
        return lambda event: value in get(event)
    cmp = _EQUALITY.get(op_name) or _ORDERING[op_name]
    return lambda event: cmp(get(event), value)


def _normalise(key: object, op_name: object, value: object) -> tuple[KeySpec, str, Any]:
    """Validate a condition; returns its key spec, operator and normalised value."""
    if not isinstance(key, str):
        raise FieldError("key", f"key must be text, got {_describe_type(key)}")
    spec = resolve_key(key)
    if spec is None:
        raise FieldError("key", unknown_key_message(key))
    if op_name not in OPERATORS:
        raise FieldError(
            "operator", f"unknown operator {op_name!r} (expected one of {', '.join(OPERATORS)})"
        )
    assert isinstance(op_name, str)
    if op_name in _ORDERING:
        if spec.kind not in (NUMBER, ATTRIBUTE):
            raise FieldError(
                "operator",
                f"operator {op_name!r} needs a numeric key; {key!r} is {_KINDS[spec.kind]}",
            )
        if not _is_number(value):
            raise FieldError(
                "value", f"operator {op_name!r} needs a number, got {_describe_type(value)}"
            )
        return spec, op_name, value
    if op_name == "contains":
        if spec.kind not in (TEXT, ATTRIBUTE):
            raise FieldError(
                "operator", f"operator 'contains' needs a text key; {key!r} is {_KINDS[spec.kind]}"
            )
        if not isinstance(value, str):
            raise FieldError(
                "value", f"operator 'contains' needs a text value, got {_describe_type(value)}"
            )
        return spec, op_name, value
    if op_name in ("in", "not in"):
        return spec, op_name, _value_list(spec, op_name, value)
    return spec, op_name, _scalar(spec, op_name, value, "value")


@dataclass(frozen=True)
class Condition:
    """``key operator value``, validated on construction (raises FieldError)."""

    key: str
    operator: str
    value: Any
    test: Test = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        spec, op_name, value = _normalise(self.key, self.operator, self.value)
        compile_ = _compile_attribute if spec.kind == ATTRIBUTE else _compile_plain
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "test", compile_(spec, op_name, value))

    def describe(self) -> str:
        return f"{self.key} {self.operator} {_format_value(self.value)}"


@dataclass(frozen=True)
class Group:
    """All (``kind='and'``) or any (``kind='or'``) of ``items``."""

    kind: str
    items: tuple[Node, ...]
    test: Test = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in GROUP_KINDS:
            raise ValueError(f"group kind must be 'and' or 'or', not {self.kind!r}")
        tests = [item.test for item in self.items]
        combine = all_of if self.kind == "and" else any_of
        object.__setattr__(self, "test", combine(tests))

    def describe(self) -> str:
        return join_described(self.kind, self.items)


Node = Condition | Group


def describe_node(node: Node) -> str:
    """``node`` as text, in parentheses when it is a group of several items."""
    text = node.describe()
    return f"({text})" if isinstance(node, Group) and len(node.items) > 1 else text


def join_described(kind: str, items: Sequence[Node]) -> str:
    return f" {kind} ".join(describe_node(item) for item in items)


# Small fixed arities get their own closures: a Python-level loop costs more than the tests.
def all_of(tests: Sequence[Test]) -> Test:
    """A test that holds when every one of ``tests`` does (always, for none)."""
    tests = tuple(tests)
    if not tests:
        return _always
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        a, b = tests
        return lambda event: a(event) and b(event)
    if len(tests) == 3:
        a, b, c = tests
        return lambda event: a(event) and b(event) and c(event)

    def every(event: Event) -> bool:
        # a plain loop: all() over a generator costs a frame per item
        for test in tests:  # noqa: SIM110
            if not test(event):
                return False
        return True

    return every


def any_of(tests: Sequence[Test]) -> Test:
    """A test that holds when at least one of ``tests`` does (never, for none)."""
    tests = tuple(tests)
    if not tests:
        return _never
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        a, b = tests
        return lambda event: a(event) or b(event)
    if len(tests) == 3:
        a, b, c = tests
        return lambda event: a(event) or b(event) or c(event)

    def some(event: Event) -> bool:
        for test in tests:  # noqa: SIM110 (as in all_of)
            if test(event):
                return True
        return False

    return some


# --- parsing from data -----------------------------------------------------------------------


def parse_node(obj: object, path: str, errors: list[FieldError]) -> Node | None:
    """One condition or group at ``path`` (e.g. ``and[1]``); problems go to ``errors``."""
    if not isinstance(obj, Mapping):
        errors.append(
            FieldError(
                path,
                "a condition is a mapping {key, operator, value} or a group {and|or: [...]}"
                f", got {_describe_type(obj)}",
            )
        )
        return None
    kinds = [k for k in GROUP_KINDS if k in obj]
    if kinds:
        extra = [str(k) for k in obj if k not in GROUP_KINDS]
        if len(kinds) > 1 or extra:
            found = ", ".join(str(k) for k in obj)
            errors.append(
                FieldError(path, f"a group has exactly one key, 'and' or 'or' (found {found})")
            )
            return None
        kind = kinds[0]
        items = obj[kind]
        if not isinstance(items, list) or not items:
            errors.append(
                FieldError(
                    f"{path}.{kind}",
                    f"a group needs a non-empty list of conditions, got {_describe_type(items)}",
                )
            )
            return None
        nodes = parse_nodes(items, f"{path}.{kind}", errors)
        return None if nodes is None else Group(kind, nodes)
    before = len(errors)
    for name in obj:
        if name not in CONDITION_FIELDS:
            errors.append(
                FieldError(
                    f"{path}.{name}",
                    f"unknown condition field {name!r} "
                    "(expected key, operator, value; or a single 'and'/'or' group)",
                )
            )
    for name in CONDITION_FIELDS:
        if name not in obj:
            errors.append(FieldError(f"{path}.{name}", f"missing {name!r}"))
    if len(errors) > before:
        return None
    try:
        return Condition(obj["key"], obj["operator"], obj["value"])
    except FieldError as exc:
        errors.append(exc.under(path))
        return None


def parse_nodes(items: object, path: str, errors: list[FieldError]) -> tuple[Node, ...] | None:
    """A list of conditions at ``path`` (``and``, ``or``, ``and[0].or``); None after problems."""
    if items is None:  # `or:` with nothing after it in YAML
        return ()
    if not isinstance(items, list):
        errors.append(
            FieldError(path, f"expected a list of conditions, got {_describe_type(items)}")
        )
        return None
    before = len(errors)
    nodes = [parse_node(item, f"{path}[{i}]", errors) for i, item in enumerate(items)]
    if len(errors) > before:
        return None
    return tuple(n for n in nodes if n is not None)
