"""Rules engine: the shipped rule files, operators and keys, errors that point at the problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_vision.events.model import Event, EventState
from edge_vision.rules import (
    ActionRef,
    Rule,
    RuleError,
    RuleSet,
    event_value,
    load_rules,
    parse_rules,
    rules_from_data,
    validate_rules,
)

S = 1_000_000_000  # ns per second
REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "config" / "rules"


def event(**kw: Any) -> Event:
    """An event with plain defaults; ``duration_s`` sets ``end_ns`` from ``begin_ns``."""
    duration = kw.pop("duration_s", 0.5)
    d: dict[str, Any] = dict(
        id="e1", stream="cam0", model="yolo", label="person", class_id="0", score=0.5,
        max_score=0.7, begin_ns=10 * S, frames=5, track_id="7", state=EventState.UPDATE,
        attributes={},
    )  # fmt: skip
    d.update(kw)
    d.setdefault("end_ns", d["begin_ns"] + round(duration * S))
    return Event(**d)


def cond(key: str, op: str, value: Any) -> dict[str, Any]:
    return {"key": key, "operator": op, "value": value}


def rule_of(*conds: dict[str, Any], any_: list[dict[str, Any]] | None = None) -> Rule:
    data: dict[str, Any] = {"name": "r", "and": list(conds), "action": "a"}
    if any_ is not None:
        data["or"] = any_
    return rules_from_data([data]).rules[0]


def holds(key: str, op: str, value: Any, ev: Event) -> bool:
    return rule_of(cond(key, op, value)).matches(ev)


# --- the shipped EDGEMATRIX samples -----------------------------------------------------------


def test_edgematrix_record_sample_fires_from_20_percent() -> None:
    rules = load_rules(RULES_DIR / "edgematrix_record.json")
    assert [r.name for r in rules] == ["record_on_detection"]
    rule = rules.rules[0]
    assert rule.action == ActionRef("record", {"duration_s": 5, "max_duration_s": 60})
    assert rules.match(event(score=0.199)) == []
    assert rules.match(event(score=0.2)) == [rule]
    assert rules.match(event(score=0.95)) == [rule]
    # scores arrive as float32 from the Event message: 0.2f is 0.2000000029..., 0.29f is
    # 0.2899999916...; the percent alias must still read 20 % and 29 %
    assert rules.match(event(score=float(np.float32(0.2)))) == [rule]
    assert event_value(event(score=float(np.float32(0.29))), "probability") == 29.0


def test_edgematrix_upload_sample_fires_on_ended_tracks_of_1_3_s() -> None:
    rules = load_rules(RULES_DIR / "edgematrix_upload.json")
    rule = rules.rules[0]
    assert rule.action == ActionRef("upload", {})
    end = EventState.END
    assert rules.match(event(state=end, duration_s=1.29)) == []
    assert rules.match(event(state=end, duration_s=1.3)) == [rule]
    assert rules.match(event(state=end, duration_s=2.0)) == [rule]
    assert rules.match(event(state=EventState.NEW, duration_s=5.0)) == []
    assert rules.match(event(state=EventState.UPDATE, duration_s=5.0)) == []


def test_duration_threshold_is_exact_for_every_millisecond() -> None:
    # (end - begin) * 1e-9 is one ulp off for ~40 % of millisecond values; the rules use / 1e9
    begin = 1_700_000_000 * S
    for ms in range(0, 5000):
        rule = rule_of(cond("tracking_duration", ">=", ms / 1000))
        assert rule.matches(event(begin_ns=begin, end_ns=begin + ms * 1_000_000)), ms
        assert not rule.matches(event(begin_ns=begin, end_ns=begin + ms * 1_000_000 - 1)), ms


def test_example_yaml_loads_and_matches() -> None:
    rules = load_rules(RULES_DIR / "example.yaml")
    assert [r.name for r in rules] == ["person_at_door", "long_event_webhook", "vehicle_recording"]
    door = event(label="person", max_score=0.65, attributes={"zone": "door"})
    assert [r.name for r in rules.match(door)] == ["person_at_door"]
    assert rules.match(event(label="person", max_score=0.65, attributes={"zone": "hall"})) == []
    ended = event(state=EventState.END, duration_s=2.5, attributes={"zone": "door"})
    assert [r.name for r in rules.match(ended)] == ["person_at_door", "long_event_webhook"]
    truck = event(label="truck", stream="cam1", max_score=0.9, frames=12)
    assert [r.name for r in rules.match(truck)] == ["vehicle_recording"]
    assert rules.match(event(label="truck", stream="cam1", max_score=0.9, frames=3)) == []
    assert rules.get("vehicle_recording").action == ActionRef("record", {"duration_s": 10})
    assert rules.get("vehicle_recording").describe() == (
        "label in ['car', 'truck', 'bus'] and stream in ['cam0', 'cam1'] and "
        "(attributes.zone == 'loading_bay' or (max_score >= 0.8 and frames >= 10))"
    )


# --- operators and keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("==", 5, True), ("==", 5.0, True), ("==", 6, False),
        ("!=", 5, False), ("!=", 6, True),
        (">", 4, True), (">", 5, False),
        (">=", 5, True), (">=", 5.5, False),
        ("<", 6, True), ("<", 5, False),
        ("<=", 5, True), ("<=", 4.9, False),
        ("in", [1, 5.0], True), ("in", [1, 2], False),
        ("not in", [1, 2], True), ("not in", [5], False),
    ],
)  # fmt: skip
def test_numeric_operators(op: str, value: Any, expected: bool) -> None:
    assert holds("frames", op, value, event(frames=5)) is expected


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("==", "person", True), ("==", "Person", False),
        ("!=", "person", False), ("!=", "car", True),
        ("in", ["car", "person"], True), ("in", ["car"], False),
        ("not in", ["car"], True), ("not in", ["person"], False),
        ("contains", "erso", True), ("contains", "car", False),
    ],
)  # fmt: skip
def test_text_operators(op: str, value: Any, expected: bool) -> None:
    assert holds("label", op, value, event(label="person")) is expected


def test_ids_accept_integer_values() -> None:
    assert holds("class_id", "==", 0, event(class_id="0"))
    assert holds("track_id", "in", [3, 7], event(track_id="7"))
    assert not holds("track_id", "==", 7, event(track_id=""))


@pytest.mark.parametrize("value", ["END", "end", "End", 2])
def test_state_by_name_any_case_or_int(value: Any) -> None:
    assert holds("state", "==", value, event(state=EventState.END))
    assert not holds("state", "==", value, event(state=EventState.NEW))
    assert holds("state", "!=", value, event(state=EventState.UPDATE))


def test_state_in_list_and_plain_int_state() -> None:
    assert holds("state", "in", ["new", "UPDATE"], event(state=EventState.NEW))
    assert not holds("state", "in", ["new", 1], event(state=EventState.END))
    # an Event built from a message may carry a plain int
    assert holds("state", "==", "end", event(state=2))


def test_aliases() -> None:
    ev = event(label="car", score=0.42, max_score=0.8, state=EventState.NEW, duration_s=3.0)
    assert event_value(ev, "probability") == 42.0
    assert event_value(ev, "max_probability") == 80.0
    assert event_value(ev, "tracking_duration") == 3.0
    assert event_value(ev, "object") == event_value(ev, "class_name") == "car"
    statuses = [event_value(event(state=s), "tracking_status") for s in EventState]
    assert statuses == ["new", "tracking", "ended"]
    assert holds("tracking_status", "==", "Tracking", event(state=EventState.UPDATE))
    assert holds("max_probability", ">", 79.9, ev)
    assert holds("object", "==", "car", ev)


def test_event_value_vocabulary() -> None:
    ev = event(attributes={"zone": "door"})
    assert event_value(ev, "attributes.zone") == "door"
    assert event_value(ev, "attributes.lane") is None
    assert event_value(ev, "state") is EventState.UPDATE
    assert event_value(ev, "duration_s") == 0.5
    with pytest.raises(KeyError, match="lable"):
        event_value(ev, "lable")


@pytest.mark.parametrize(
    ("op", "value", "attr", "expected"),
    [
        ("==", "door", "door", True), ("==", "door", "gate", False),
        ("==", 20, "20.0", True), ("==", "20", "20.0", True), ("==", 20.5, "20.5", True),
        ("==", 20, "twenty", False),
        ("!=", "door", "gate", True), ("!=", 20, "20.0", False),
        (">", 3, "3.5", True), (">=", 4, "3.5", False), ("<", 4, "3.5", True),
        ("<=", 3, "3", True), (">", 3, "many", False),
        ("in", ["door", "gate"], "gate", True), ("in", [1, 2], "2.0", True),
        ("in", ["door"], "hall", False),
        ("not in", ["door"], "hall", True), ("not in", [2], "2", False),
        ("contains", "oo", "door", True), ("contains", "x", "door", False),
    ],
)  # fmt: skip
def test_attribute_operators(op: str, value: Any, attr: str, expected: bool) -> None:
    assert holds("attributes.zone", op, value, event(attributes={"zone": attr})) is expected


@pytest.mark.parametrize(
    ("op", "value"),
    [("==", "door"), ("!=", "door"), (">", 1), ("in", ["a"]), ("not in", ["a"]),
     ("contains", "d")],
)  # fmt: skip
def test_missing_attribute_is_false_for_every_operator(op: str, value: Any) -> None:
    assert not holds("attributes.zone", op, value, event(attributes={"lane": "1"}))


def test_and_or_semantics() -> None:
    person = cond("label", "==", "person")
    door = cond("attributes.zone", "==", "door")
    gate = cond("attributes.zone", "==", "gate")
    rule = rule_of(person, any_=[door, gate])
    assert rule.matches(event(label="person", attributes={"zone": "gate"}))
    assert not rule.matches(event(label="person", attributes={"zone": "hall"}))
    assert not rule.matches(event(label="car", attributes={"zone": "door"}))
    # an empty `or` adds no constraint; so does a missing one or `or:` with nothing after it
    assert rule_of(person, any_=[]).matches(event(label="person"))
    assert rule_of(person).matches(event(label="person"))
    only_or = rules_from_data([{"name": "r", "or": [door, gate], "action": "a"}]).rules[0]
    assert only_or.matches(event(attributes={"zone": "door"}))
    assert not only_or.matches(event())
    assert parse_rules("- {name: r, or: , action: a}").rules[0].matches(event())


def test_rule_without_conditions_matches_everything() -> None:
    rule = rules_from_data({"rules": [{"name": "all", "action": "log"}]}).rules[0]
    assert rule.matches(event()) and rule.matches(event(label="x", state=EventState.END))
    assert rule.describe() == "always"


def test_many_conditions_and_nested_groups() -> None:
    five = [cond("frames", ">=", i) for i in range(5)]
    assert rule_of(*five).matches(event(frames=4))
    assert not rule_of(*five).matches(event(frames=3))
    nested = {"or": [cond("label", "==", "car"), {"and": [cond("score", ">", 0.9),
                                                         cond("label", "==", "bus")]}]}  # fmt: skip
    rule = rule_of(cond("stream", "==", "cam0"), nested)
    assert rule.matches(event(label="car"))
    assert rule.matches(event(label="bus", score=0.95))
    assert not rule.matches(event(label="bus", score=0.5))
    assert not rule.matches(event(label="car", stream="cam1"))
    four_or = {"or": [cond("frames", "==", i) for i in range(4)]}
    assert rule_of(four_or).matches(event(frames=3))
    assert not rule_of(four_or).matches(event(frames=4))
    assert rule.describe() == (
        "stream == 'cam0' and (label == 'car' or (score > 0.9 and label == 'bus'))"
    )


def test_ruleset_match_order_and_disabled_rules() -> None:
    rules = parse_rules(
        """
        rules:
          - {name: first, and: [{key: label, operator: "==", value: person}], action: a}
          - {name: disabled, enabled: false, action: b}
          - {name: all, action: {name: c, level: 2}}
        """,
        "inline.yaml",
    )
    assert len(rules) == 3 and rules.source == "inline.yaml"
    assert [r.name for r in rules.match(event(label="person"))] == ["first", "all"]
    assert [r.name for r in rules.match(event(label="car"))] == ["all"]
    assert rules.get("disabled").matches(event())  # matches() ignores enabled; match() skips it
    assert rules.get("all").action == ActionRef("c", {"level": 2})
    with pytest.raises(TypeError):
        rules.get("all").action.args["level"] = 3  # type: ignore[index]


def test_edgematrix_and_native_forms_are_equivalent() -> None:
    native = parse_rules(
        "- name: r\n  and: [{key: probability, operator: '>=', value: 20}]\n"
        "  action: {name: record, duration_s: 5}\n"
    )
    edgematrix = parse_rules(
        '[{"rule_name": "r", "and": [{"key": "probability", "operator": ">=", "value": 20}],'
        ' "or": [], "action": {"action_name": "record", "duration_s": 5}}]'
    )
    for rules in (native, edgematrix):
        assert rules.rules[0].action == ActionRef("record", {"duration_s": 5})
        assert rules.rules[0].describe() == "probability >= 20"


def test_empty_documents_have_no_rules() -> None:
    assert len(parse_rules("")) == 0
    assert len(parse_rules("rules: []")) == 0
    assert len(parse_rules("# nothing yet\nrules:\n")) == 0


# --- errors -----------------------------------------------------------------------------------

GOOD = cond("label", "==", "person")


@pytest.mark.parametrize(
    ("rule", "rule_label", "field", "says"),
    [
        ({"name": "r", "and": [GOOD, cond("score", "=>", 0.5)], "action": "a"},
         "r", "and[1].operator", "unknown operator '=>'"),
        ({"name": "r", "and": [cond("lable", "==", "x")], "action": "a"},
         "r", "and[0].key", "unknown key 'lable'"),
        ({"name": "r", "and": [cond("max_score", ">=", "high")], "action": "a"},
         "r", "and[0].value", "needs a number"),
        ({"name": "r", "and": [cond("label", ">", 3)], "action": "a"},
         "r", "and[0].operator", "needs a numeric key"),
        ({"name": "r", "and": [cond("label", "==", 3)], "action": "a"},
         "r", "and[0].value", "needs a text value"),
        ({"name": "r", "or": [cond("attributes.zone", "in", "door")], "action": "a"},
         "r", "or[0].value", "needs a list"),
        ({"name": "r", "or": [cond("label", "in", [])], "action": "a"},
         "r", "or[0].value", "non-empty list"),
        ({"name": "r", "and": [cond("frames", "in", [1, "two"])], "action": "a"},
         "r", "and[0].value[1]", "needs a number"),
        ({"name": "r", "and": [cond("frames", "contains", "1")], "action": "a"},
         "r", "and[0].operator", "needs a text key"),
        ({"name": "r", "and": [cond("label", "contains", 1)], "action": "a"},
         "r", "and[0].value", "needs a text value"),
        ({"name": "r", "and": [cond("state", "==", "done")], "action": "a"},
         "r", "and[0].value", "not a state"),
        ({"name": "r", "and": [cond("tracking_status", "==", "lost")], "action": "a"},
         "r", "and[0].value", "not a tracking_status"),
        ({"name": "r", "and": [cond("score", ">=", True)], "action": "a"},
         "r", "and[0].value", "needs a number"),
        ({"name": "r", "and": ["label == person"], "action": "a"},
         "r", "and[0]", "a condition is a mapping"),
        ({"name": "r", "and": [{"key": "label", "value": "x"}], "action": "a"},
         "r", "and[0].operator", "missing 'operator'"),
        ({"name": "r", "and": [{**GOOD, "op": "=="}], "action": "a"},
         "r", "and[0].op", "unknown condition field"),
        ({"name": "r", "and": GOOD, "action": "a"},
         "r", "and", "expected a list"),
        ({"name": "r", "and": [{"or": [GOOD, cond("frames", ">", "x")]}], "action": "a"},
         "r", "and[0].or[1].value", "needs a number"),
        ({"name": "r", "and": [{"or": []}], "action": "a"},
         "r", "and[0].or", "non-empty list"),
        ({"name": "r", "and": [{"or": [GOOD], "and": [GOOD]}], "action": "a"},
         "r", "and[0]", "exactly one key"),
        ({"name": "r", "and": [GOOD]},
         "r", "action", "missing action"),
        ({"name": "r", "action": ["a", "b"]},
         "r", "action", "exactly one action"),
        ({"name": "r", "action": {"duration_s": 5}},
         "r", "action", "needs 'name'"),
        ({"name": "r", "action": {"action_name": ""}},
         "r", "action.action_name", "expected an action name"),
        ({"name": "r", "actions": "a", "action": "a"},
         "r", "actions", "unknown rule key 'actions'"),
        ({"name": "r", "enabled": "no", "action": "a"},
         "r", "enabled", "true or false"),
        ({"and": [GOOD], "action": "a"},
         "#1", "name", "missing rule name"),
        ({"name": "", "action": "a"},
         "#1", "name", "non-empty name"),
        ({"name": False, "action": "a"},
         "#1", "name", "quote the name"),
        ({"name": "r", "rule_name": "r", "action": "a"},
         "#1", "rule_name", "not both"),
    ],
)  # fmt: skip
def test_malformed_rule_names_rule_and_field(
    rule: dict[str, Any], rule_label: str, field: str, says: str
) -> None:
    ok = {"name": "ok", "action": "a"}  # the bad rule is second, so '#1' when it has no name
    with pytest.raises(RuleError) as info:
        rules_from_data({"rules": [ok, rule]}, "bad.yaml")
    exc = info.value
    assert (exc.rule, exc.field) == (rule_label, field)
    assert says in exc.message
    text = str(exc)
    assert rule_label in text and repr(field) in text and text.startswith("bad.yaml: rule ")
    assert isinstance(exc, ValueError)


def test_error_message_format() -> None:
    with pytest.raises(RuleError) as info:
        parse_rules(
            "- name: person_at_door\n"
            "  and:\n"
            "    - {key: label, operator: '==', value: person}\n"
            "    - {key: max_score, operator: '=>', value: 0.6}\n"
            "  action: alert\n",
            "rules.yaml",
        )
    assert str(info.value) == (
        "rules.yaml: rule 'person_at_door', field 'and[1].operator': unknown operator '=>' "
        "(expected one of ==, !=, >, >=, <, <=, in, not in, contains)"
    )
    with pytest.raises(RuleError, match=r"expected one of id, stream, .*attributes\.<name>"):
        parse_rules("- {name: r, and: [{key: colour, operator: '==', value: red}], action: a}")


def test_yaml_syntax_error_has_line() -> None:
    with pytest.raises(RuleError) as info:
        parse_rules("rules:\n  - name: r\n    and: [{key: label\n    action: a\n", "x.yaml")
    exc = info.value
    assert (exc.rule, exc.field) == ("", "")
    assert exc.line is not None and f"line {exc.line}" in str(exc)
    assert str(exc).startswith("x.yaml: YAML syntax error at line ")


def test_json_syntax_error_in_json_file(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{\n\t"rules": [\n\t\t{"rule_name": "r",}\n\t]\n}\n')
    with pytest.raises(RuleError) as info:
        load_rules(path)
    assert info.value.line == 3 and "JSON syntax error at line 3" in str(info.value)
    assert str(path) in str(info.value)


def test_unreadable_file_is_a_rule_error(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("text", "field", "says"),
    [
        ("rules: {name: r}", "rules", "must be a list"),
        ("version: 2\nrules: []", "version", "unknown top-level key"),
        ("just text", "", "expected a list of rules"),
        ("- 42", "", "a rule is a mapping"),
    ],
)
def test_malformed_document_shapes(text: str, field: str, says: str) -> None:
    with pytest.raises(RuleError, match=says) as info:
        parse_rules(text, "doc.yaml")
    assert info.value.field == field


def test_duplicate_rule_names() -> None:
    text = "- {name: a, action: x}\n- {name: b, action: x}\n- {rule_name: a, action: y}\n"
    with pytest.raises(RuleError, match="duplicate rule name") as info:
        parse_rules(text, "dup.yaml")
    assert (info.value.rule, info.value.field) == ("a", "rule_name")
    assert "rule #0" in str(info.value) and "'a'" in str(info.value)
    rule = parse_rules("- {name: a, action: x}").rules[0]
    with pytest.raises(RuleError, match="duplicate"):
        RuleSet([rule, rule])


def test_validate_rules_collects_every_problem() -> None:
    data = [
        {"name": "a", "and": [cond("lable", "==", "x"), cond("score", ">", "y")], "action": "x"},
        {"name": "b", "action": "x"},
        {"and": [cond("frames", "=>", 1)]},
        {"name": "b", "action": "x"},
    ]
    found = [(e.rule, e.field) for e in validate_rules(data, "v.yaml")]
    assert found == [
        ("a", "and[0].key"),
        ("a", "and[1].value"),
        ("#2", "name"),
        ("#2", "and[0].operator"),
        ("#2", "action"),
        ("b", "name"),
    ]
    assert validate_rules([{"name": "fine", "action": "x"}]) == []
    assert [e.field for e in validate_rules({"rules": 3})] == ["rules"]


def test_check_actions() -> None:
    rules = parse_rules(
        "- {name: rec, action: {action_name: record, duration_s: 5}}\n"
        "- {name: up, enabled: false, action: upload}\n",
        "acts.yaml",
    )
    rules.check_actions({"record": {"duration_s", "max_duration_s"}, "upload": ()})
    with pytest.raises(RuleError, match="unknown action 'upload'") as info:
        rules.check_actions({"record": ["duration_s"]})
    assert (info.value.rule, info.value.field) == ("up", "action")  # disabled rules too
    assert "configured actions: record" in str(info.value)
    with pytest.raises(RuleError, match="no argument 'duration_s'") as info:
        rules.check_actions({"record": ["max_duration_s"], "upload": []})
    assert (info.value.rule, info.value.field) == ("rec", "action.duration_s")
    assert "'action.duration_s'" in str(info.value) and "acts.yaml" in str(info.value)
