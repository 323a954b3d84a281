"""Rule files: load, validate and match events against rules.

A rule file is YAML or JSON (parsed the same way; JSON is tried first for text that opens with
``{`` or ``[`` because PyYAML rejects tab-indented JSON). At the top, either a list of rules or
``{rules: [...]}``. A rule::

    - name: person_at_door            # or `rule_name` (EDGEMATRIX); unique in the file
      and: [<condition>, ...]         # all must hold
      or:  [<condition>, ...]         # at least one must hold, when the list is not empty
      action: alert                   # or {name: alert, <arg>: <value>, ...}
                                      # or {action_name: record, duration_s: 5} (EDGEMATRIX)
      enabled: true                   # optional
      description: free text          # optional

A rule without conditions matches every event. The conditions and the key vocabulary are
described in ``conditions.py`` and ``keys.py``. The action names an action *instance* configured
on the action_trigger node; the other keys of an action mapping are that rule's arguments for it
(``RuleSet.check_actions`` verifies both against what the node has).

Every problem raises ``RuleError`` naming the file, the rule (its name, or ``#<index>`` when it
has none) and the field path inside the rule, e.g. ``and[1].operator``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml

from edge_vision.events.model import Event
from edge_vision.rules.conditions import (
    FieldError,
    Node,
    Test,
    all_of,
    any_of,
    describe_node,
    join_described,
    parse_nodes,
)

RULE_KEYS = ("name", "rule_name", "and", "or", "action", "enabled", "description")
ACTION_NAME_KEYS = ("name", "action_name")


class RuleError(ValueError):
    """A rule file problem. ``rule``: rule name or ``#<index>`` ('' for file-level problems);
    ``field``: path inside the rule, e.g. ``and[1].operator`` ('' when not about one field);
    ``line``: 1-based line of a syntax error, else None."""

    def __init__(
        self,
        message: str,
        *,
        rule: str = "",
        field: str = "",
        source: str = "",
        line: int | None = None,
    ) -> None:
        self.message = message
        self.rule = rule
        self.field = field
        self.source = source
        self.line = line
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.rule:
            where.append(
                f"rule {self.rule}" if self.rule.startswith("#") else f"rule {self.rule!r}"
            )
        if self.field:
            where.append(f"field {self.field!r}")
        parts = [p for p in (self.source, ", ".join(where)) if p]
        return ": ".join([*parts, self.message])

    def __str__(self) -> str:
        return self._format()


@dataclass(frozen=True)
class ActionRef:
    """The action a rule triggers: an action instance name and this rule's arguments for it."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # read-only view of a private copy: rules are shared and must not change under a node
        object.__setattr__(self, "args", MappingProxyType(dict(self.args)))

    def __hash__(self) -> int:
        # argument values may be lists (unhashable); equal refs have equal names
        return hash(self.name)


@dataclass(frozen=True, eq=False)
class Rule:
    """A named rule: ``all_of`` must all hold and, when not empty, one of ``any_of``."""

    name: str
    action: ActionRef
    all_of: tuple[Node, ...] = ()
    any_of: tuple[Node, ...] = ()
    enabled: bool = True
    description: str = ""
    test: Test = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "all_of", tuple(self.all_of))
        object.__setattr__(self, "any_of", tuple(self.any_of))
        tests = [node.test for node in self.all_of]
        if self.any_of:
            tests.append(any_of([node.test for node in self.any_of]))
        object.__setattr__(self, "test", all_of(tests))

    def matches(self, event: Event) -> bool:
        """Whether the conditions hold for ``event`` (``enabled`` is not considered here)."""
        return self.test(event)

    def describe(self) -> str:
        """The conditions as one expression, e.g. ``label == 'person' and max_score >= 0.6``."""
        parts = [describe_node(node) for node in self.all_of]
        if self.any_of:
            text = join_described("or", self.any_of)
            parts.append(f"({text})" if parts and len(self.any_of) > 1 else text)
        return " and ".join(parts) if parts else "always"


class RuleSet:
    """The rules of one file, in file order."""

    __slots__ = ("_active", "_by_name", "rules", "source")

    def __init__(self, rules: Iterable[Rule] = (), source: str = "<rules>") -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.source = source
        self._by_name: dict[str, Rule] = {}
        for rule in self.rules:
            if rule.name in self._by_name:
                raise RuleError("duplicate rule name", rule=rule.name, field="name", source=source)
            self._by_name[rule.name] = rule
        # (rule, test) pairs so match() does no attribute lookups or enabled checks per event
        self._active: tuple[tuple[Rule, Test], ...] = tuple(
            (rule, rule.test) for rule in self.rules if rule.enabled
        )

    def match(self, event: Event) -> list[Rule]:
        """The enabled rules whose conditions hold for ``event``, in file order."""
        return [rule for rule, test in self._active if test(event)]

    def get(self, name: str) -> Rule | None:
        return self._by_name.get(name)

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __repr__(self) -> str:
        return f"RuleSet({self.source!r}, {len(self.rules)} rules)"

    def check_actions(self, known: Mapping[str, Collection[str]]) -> None:
        """Raise RuleError unless every rule's action is in ``known`` (instance name -> accepted
        argument names) with arguments it accepts. Disabled rules are checked too."""
        for rule in self.rules:
            action = rule.action
            accepted = known.get(action.name)
            if accepted is None:
                configured = ", ".join(sorted(known)) or "none"
                raise RuleError(
                    f"unknown action {action.name!r} (configured actions: {configured})",
                    rule=rule.name,
                    field="action",
                    source=self.source,
                )
            for arg in action.args:
                if arg not in accepted:
                    allowed = ", ".join(sorted(accepted)) or "none"
                    raise RuleError(
                        f"action {action.name!r} takes no argument {arg!r} (accepted: {allowed})",
                        rule=rule.name,
                        field=f"action.{arg}",
                        source=self.source,
                    )


# --- parsing --------------------------------------------------------------------------------


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return f"text {value!r}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _parse_action(obj: Mapping[Any, Any], errors: list[FieldError]) -> ActionRef | None:
    if "action" not in obj or obj["action"] is None:
        errors.append(FieldError("action", "missing action (an action instance name)"))
        return None
    action = obj["action"]
    if isinstance(action, str):
        if not action.strip():
            errors.append(FieldError("action", "empty action name"))
            return None
        return ActionRef(action)
    if isinstance(action, list):
        errors.append(
            FieldError(
                "action",
                f"a rule has exactly one action, got a list of {len(action)}; "
                "write one rule per action",
            )
        )
        return None
    if not isinstance(action, Mapping):
        errors.append(
            FieldError("action", f"expected an action name or a mapping, got {_kind(action)}")
        )
        return None
    keys = [k for k in ACTION_NAME_KEYS if k in action]
    if not keys:
        errors.append(FieldError("action", "the action mapping needs 'name' (or 'action_name')"))
        return None
    if len(keys) > 1:
        errors.append(FieldError("action.action_name", "give 'name' or 'action_name', not both"))
        return None
    name = action[keys[0]]
    if not isinstance(name, str) or not name.strip():
        errors.append(
            FieldError(f"action.{keys[0]}", f"expected an action name, got {_kind(name)}")
        )
        return None
    args: dict[str, Any] = {}
    for arg, value in action.items():
        if arg == keys[0]:
            continue
        if not isinstance(arg, str):
            errors.append(FieldError(f"action.{arg}", "argument names must be text"))
            return None
        args[arg] = value
    return ActionRef(name, args)


def _rule_name(obj: Mapping[Any, Any], errors: list[FieldError]) -> str | None:
    keys = [k for k in ("name", "rule_name") if k in obj]
    if not keys:
        errors.append(FieldError("name", "missing rule name ('name' or 'rule_name')"))
        return None
    if len(keys) > 1:
        errors.append(FieldError("rule_name", "give 'name' or 'rule_name', not both"))
        return None
    name = obj[keys[0]]
    if not isinstance(name, str) or not name.strip():
        # YAML 1.1 reads on/off/yes/no as booleans and digits as numbers: say how to fix it
        hint = "" if isinstance(name, str) or name is None else " (quote the name)"
        errors.append(FieldError(keys[0], f"expected a non-empty name, got {_kind(name)}{hint}"))
        return None
    return name


def _parse_rule(obj: object, index: int, source: str, errors: list[RuleError]) -> Rule | None:
    """One rule; its problems (all of them) go to ``errors`` as RuleErrors."""
    label = f"#{index}"
    if not isinstance(obj, Mapping):
        errors.append(
            RuleError(
                f"a rule is a mapping (name, and, or, action), got {_kind(obj)}",
                rule=label,
                source=source,
            )
        )
        return None
    problems: list[FieldError] = []
    name = _rule_name(obj, problems)
    if name is not None:
        label = name
    for key in obj:
        if key not in RULE_KEYS:
            problems.append(
                FieldError(str(key), f"unknown rule key {key!r} (expected {', '.join(RULE_KEYS)})")
            )
    all_nodes = parse_nodes(obj.get("and"), "and", problems)
    any_nodes = parse_nodes(obj.get("or"), "or", problems)
    action = _parse_action(obj, problems)
    enabled = obj.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.append(FieldError("enabled", f"expected true or false, got {_kind(enabled)}"))
    description = obj.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str):
        problems.append(FieldError("description", f"expected text, got {_kind(description)}"))
    errors.extend(RuleError(p.message, rule=label, field=p.field, source=source) for p in problems)
    if problems:
        return None
    assert name is not None and action is not None
    assert all_nodes is not None and any_nodes is not None
    return Rule(name, action, all_nodes, any_nodes, enabled, description)


def _rule_items(obj: object, source: str) -> list[Any]:
    """The list of rule entries in a parsed document; raises RuleError for any other shape."""
    if obj is None:  # empty file: no rules
        return []
    if isinstance(obj, list):
        return obj
    if isinstance(obj, Mapping):
        for key in obj:
            if key != "rules":
                raise RuleError(
                    f"unknown top-level key {key!r} (expected 'rules')",
                    field=str(key),
                    source=source,
                )
        rules = obj.get("rules")
        if rules is None:
            return []
        if isinstance(rules, list):
            return rules
        raise RuleError(
            f"'rules' must be a list of rules, got {_kind(rules)}", field="rules", source=source
        )
    raise RuleError(
        f"expected a list of rules or a mapping with 'rules', got {_kind(obj)}", source=source
    )


def _build(obj: object, source: str) -> tuple[RuleSet | None, list[RuleError]]:
    try:
        items = _rule_items(obj, source)
    except RuleError as exc:
        return None, [exc]
    errors: list[RuleError] = []
    rules: list[Rule] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        rule = _parse_rule(item, index, source, errors)
        # Duplicates are checked on the raw name so that they are reported even when the rule
        # has other problems too.
        name = item.get("name", item.get("rule_name")) if isinstance(item, Mapping) else None
        if isinstance(name, str) and name.strip():
            if name in first_index:
                key = "name" if "name" in item else "rule_name"
                errors.append(
                    RuleError(
                        f"duplicate rule name (first used by rule #{first_index[name]})",
                        rule=name,
                        field=key,
                        source=source,
                    )
                )
            else:
                first_index[name] = index
        if rule is not None:
            rules.append(rule)
    if errors:
        return None, errors
    return RuleSet(rules, source), []


def validate_rules(obj: object, source: str = "<data>") -> list[RuleError]:
    """Every problem in parsed rule data (one per bad condition, not only the first); [] if ok."""
    return _build(obj, source)[1]


def rules_from_data(obj: object, source: str = "<data>") -> RuleSet:
    """A RuleSet from parsed YAML/JSON data; raises the first RuleError found."""
    ruleset, errors = _build(obj, source)
    if errors:
        raise errors[0]
    assert ruleset is not None
    return ruleset


def _load_text(text: str, source: str) -> Any:
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            # Flow-style YAML also opens with { or [; only a .json file gets the JSON error.
            if source.lower().endswith(".json"):
                raise RuleError(
                    f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                    source=source,
                    line=exc.lineno,
                ) from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        where = f" at line {line}, column {mark.column + 1}" if mark is not None else ""
        what = "; ".join(p for p in (exc.context, exc.problem) if p)
        if any(f"'{c}" in what for c in "<>!="):
            what += ' (quote operators in YAML: operator: ">=")'
        raise RuleError(f"YAML syntax error{where}: {what}", source=source, line=line) from None
    except yaml.YAMLError as exc:
        raise RuleError(f"YAML error: {exc}", source=source) from None


def parse_rules(text: str, source: str = "<string>") -> RuleSet:
    """A RuleSet from the text of a rule file (YAML or JSON); ``source`` names it in errors."""
    return rules_from_data(_load_text(text, source), source)


def load_rules(path: str | os.PathLike[str]) -> RuleSet:
    """A RuleSet from a YAML or JSON file; any problem, unreadable file included, is RuleError."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(f"cannot read the rule file: {exc}", source=source) from exc
    return parse_rules(text, source)
