"""Rules engine: which events trigger which actions (pure Python, no ROS).

Rule files (YAML or JSON, native or EDGEMATRIX form) are validated and compiled once by
``load_rules`` / ``parse_rules`` / ``rules_from_data``; ``RuleSet.match(event)`` then returns
the enabled rules an ``Event`` satisfies. See ``rules.py`` for the file format, ``conditions.py``
for operators and ``keys.py`` for the key vocabulary and the EDGEMATRIX aliases.
"""

from edge_vision.rules.conditions import OPERATORS, Condition, Group
from edge_vision.rules.keys import ALIASES, KEY_NAMES, event_value
from edge_vision.rules.rules import (
    ActionRef,
    Rule,
    RuleError,
    RuleSet,
    load_rules,
    parse_rules,
    rules_from_data,
    validate_rules,
)

__all__ = [
    "ALIASES",
    "KEY_NAMES",
    "OPERATORS",
    "ActionRef",
    "Condition",
    "Group",
    "Rule",
    "RuleError",
    "RuleSet",
    "event_value",
    "load_rules",
    "parse_rules",
    "rules_from_data",
    "validate_rules",
]
