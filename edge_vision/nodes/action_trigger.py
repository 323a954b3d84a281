"""action_trigger: rules over events fire plugin actions whose properties are ROS parameters.

Topics: subscribes ``events`` (edge_vision/Event, reliable); publishes ``alerts``
(edge_vision/Alert, from ``alert`` actions), ``/diagnostics``.
Services: ``~/reload_rules`` (std_srvs/Trigger). Calls the recorder's ``recorder_service``
(edge_vision/srv/Record) for ``record`` actions.

Action *instances* are listed in ``actions`` as ``'NAME: TYPE'`` (``'upload: webhook'``); each
instance's typed properties become parameters ``NAME.PROPERTY`` with descriptors, settable at
start-up (params file, launch) and at run time (``ros2 param set``). Rules (``rules_file``,
YAML or JSON, see :mod:`edge_vision.rules`) name the instance to fire. Types come from the
built-ins, the ``edge_vision.actions`` entry-point group and the ``*.py`` files of
``plugin_dirs``.

Each instance runs on its own worker thread with a bounded queue: a slow or failing action
neither stalls the node nor the other actions; drops and failures are counted and shown in
diagnostics. A rules file that fails to load at start-up stops the node with the rule and
field that are wrong; one that fails on reload (parameter change, file change on disk,
``~/reload_rules``) is refused and the last good rules stay in force.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from std_srvs.srv import Trigger

from edge_vision.actions import Action, ActionError, ActionRunner, EventFilter, PropertySpec
from edge_vision.actions.registry import discover_action_types
from edge_vision.events import Event
from edge_vision.msg import Alert
from edge_vision.msg import Event as EventMsg
from edge_vision.nodes.event_aggregator import events_qos
from edge_vision.ros import diagnostics
from edge_vision.ros.conversions import event_to_msg, msg_to_event
from edge_vision.ros.image_conversion import ns_to_stamp
from edge_vision.ros.node_main import EdgeVisionNode, NodeConfigError, run_node
from edge_vision.ros.parameters import Param, ParameterBinding
from edge_vision.ros.services import NEW_CLIENT_SETTLE_S, call_with_resend
from edge_vision.rules import RuleError, RuleSet, load_rules
from edge_vision.srv import Record

_FILTER_PROPERTIES = {name for name in EventFilter.properties() if name not in Action.properties()}
_INSTANCE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*:\s*([A-Za-z][A-Za-z0-9_.-]*)\s*$")


def parse_action_entries(entries: list[str]) -> list[tuple[str, str]]:
    """``['upload: webhook', ...]`` -> [(instance, type)]; ValueError naming a bad entry."""
    out: list[tuple[str, str]] = []
    for entry in entries:
        if not entry.strip():
            continue
        m = _INSTANCE.match(entry)
        if m is None:
            raise ValueError(
                f"actions entry {entry!r} is not 'NAME: TYPE' (NAME: letters, digits, _)"
            )
        out.append((m.group(1), m.group(2)))
    names = [n for n, _ in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"action instance names must be unique; repeated: {', '.join(dup)}")
    return out


def _check_entries(entries: list[str]) -> str | None:
    try:
        parse_action_entries(entries)
    except ValueError as exc:
        return str(exc)
    return None


PARAMS = (
    Param(
        "rules_file",
        "",
        "YAML or JSON rules (docs/actions.md). Setting it loads and checks the file first; an "
        "invalid file is refused and the current rules stay.",
    ),
    Param("watch_rules", True, "Reload rules_file when it changes on disk (checked every 1 s)."),
    Param(
        "actions",
        ["log: log"],
        "Action instances as 'NAME: TYPE'; each instance's properties are parameters "
        "NAME.PROPERTY. At run time an added entry creates an instance, a removed one deletes "
        "it (refused while a rule fires it).",
        validator=_check_entries,
    ),
    Param(
        "plugin_dirs",
        [],
        "Folders whose *.py files define more action types.",
        list_type=str,
        read_only=True,
    ),
    Param(
        "queue_size",
        100,
        "Events waiting per action instance; beyond it new ones are dropped (counted).",
        range=(1, 100_000),
        read_only=True,
    ),
    Param(
        "recorder_service",
        "recorder/record",
        "Record service the record actions call (relative names resolve in this namespace).",
    ),
    Param(
        "recorder_timeout_s",
        5.0,
        "How long a record call may wait for the recorder's service, then for its answer.",
        range=(0.1, 120.0),
    ),
)


def _param_for(spec: PropertySpec, owner: str, action: Action) -> Param:
    """A ROS parameter for one action property, validated by the property itself."""

    def check(value: Any) -> str | None:
        try:
            action.validate_property(spec.name, spec.coerce(_clean(value), owner))
        except (ValueError, ActionError) as exc:
            return str(exc)
        return None

    default = list(spec.default) if spec.type is list else spec.default
    lo, hi = spec.min, spec.max
    numeric = spec.type in (int, float)
    rng = (lo, hi) if numeric and lo is not None and hi is not None else None
    return Param(
        spec.name,
        default,
        spec.description or spec.name,
        range=rng,
        choices=tuple(spec.choices) if spec.choices and spec.type is not list else None,
        validator=check,
        list_type=str if spec.type is list else None,
    )


class ActionTriggerNode(EdgeVisionNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("action_trigger", **kwargs)
        try:
            self.params = ParameterBinding(self, PARAMS, on_change=self._on_params)
        except ValueError as exc:
            raise NodeConfigError(str(exc)) from exc
        self._lock = threading.Lock()
        self._alerts_pub = self.create_publisher(Alert, "alerts", 10)
        self._recorder = self.create_client(Record, self.params["recorder_service"])

        self.action_types, self.plugin_errors = discover_action_types(self.params["plugin_dirs"])
        for error in self.plugin_errors:
            self.get_logger().warning(error)
        self.runners: dict[str, ActionRunner] = {}
        self.bindings: dict[str, ParameterBinding] = {}
        self.rules = RuleSet(source="<none>")
        self._planned: tuple[list[str], dict[str, Action]] | None = None
        self._apply_timer: Any = None
        try:
            _removed, added = self._plan_actions(self.params["actions"])
        except ValueError as exc:
            raise NodeConfigError(str(exc)) from exc
        try:
            for action in added.values():
                self._add_instance(action)
        except Exception as exc:  # a bad property value from the params file
            raise NodeConfigError(str(exc)) from exc

        self.rules_error = ""
        self._rules_mtime: float | None = None
        if self.params["rules_file"]:
            try:
                self.rules = self._load(self.params["rules_file"])
            except RuleError as exc:
                raise NodeConfigError(str(exc)) from exc
            self._rules_mtime = _mtime(self.params["rules_file"])
        self.get_logger().info(
            f"{len(self.rules)} rules, actions: "
            + ", ".join(f"{n} ({r.action.type_name})" for n, r in self.runners.items())
        )
        self._events = 0
        self._matches = 0
        self._submit_counts: dict[str, int] = {}
        self.add_on_set_parameters_callback(self._check_rules_param)
        self.create_subscription(EventMsg, "events", self._on_event, events_qos())
        self.create_service(Trigger, "~/reload_rules", self._on_reload)
        self.create_timer(1.0, self._watch)
        self._diag = diagnostics.DiagnosticsPublisher(self, self._status)

    # -- actions --------------------------------------------------------------------------------
    def _plan_actions(self, entries: list[str]) -> tuple[list[str], dict[str, Action]]:
        """What a new ``actions`` value changes: instances to remove, new instances (built, not
        started). ValueError, with nothing changed, for an unknown type, a failing plugin
        constructor or the removal of an instance that a rule fires."""
        wanted = parse_action_entries(_clean(list(entries)))
        for name, type_name in wanted:
            if type_name not in self.action_types:
                raise ValueError(
                    f"action {name!r}: unknown type {type_name!r}; known: "
                    f"{', '.join(sorted(self.action_types))}"
                )
        new_types = dict(wanted)
        removed = [
            name
            for name, runner in self.runners.items()
            if new_types.get(name) != runner.action.type_name
        ]
        fired = {rule.action.name: rule.name for rule in self.rules}
        still_fired = [name for name in removed if name in fired and name not in new_types]
        if still_fired:
            name = still_fired[0]
            raise ValueError(
                f"action {name!r} cannot be removed: rule {fired[name]!r} fires it "
                f"(change {self.params['rules_file'] or 'the rules'} first)"
            )
        added: dict[str, Action] = {}
        for name, type_name in wanted:
            if name in self.runners and name not in removed:
                continue
            try:
                added[name] = self.action_types[type_name](name, self)
            except Exception as exc:  # a plugin's constructor
                for action in added.values():
                    action.close()
                raise ValueError(
                    f"action {name!r} ({type_name}): {type(exc).__name__}: {exc}"
                ) from exc
        return removed, added

    def _apply_planned_actions(self) -> None:
        """Runs from a one-shot timer after the ``actions`` set: parameters cannot be undeclared
        from inside rclpy's parameter callbacks."""
        self.destroy_timer(self._apply_timer)
        self._apply_timer = None
        planned, self._planned = self._planned, None
        if planned is None:
            return
        removed, added = planned
        for name in removed:
            self.bindings.pop(name).close()
            runner = self.runners.pop(name)
            # Draining may take a while; the executor thread must not wait for it.
            threading.Thread(target=runner.close, args=(2.0,), daemon=True).start()
        for action in added.values():
            try:
                self._add_instance(action)
            except Exception as exc:  # a property value given as a parameter override
                self.get_logger().error(f"action {action.name!r} not created: {exc}")
                action.close()
        self.get_logger().info(
            "actions now: "
            + (", ".join(f"{n} ({r.action.type_name})" for n, r in self.runners.items()) or "-")
        )

    def _add_instance(self, action: Action) -> None:
        name, cls = action.name, type(action)
        specs = [_param_for(spec, name, action) for spec in cls.properties().values()]
        binding = ParameterBinding(
            self,
            specs,
            on_change=lambda changed, a=action: a.set_properties(
                {k: _clean(v) for k, v in changed.items()}
            ),
            namespace=name,
        )
        action.set_properties({k: _clean(v) for k, v in binding.values.items()})
        self.bindings[name] = binding
        self.runners[name] = ActionRunner(
            action, self.params["queue_size"], logger=self.get_logger()
        )

    # ActionContext, called from the actions' worker threads --------------------------------------
    @property
    def logger(self) -> Any:
        return self.get_logger()

    def publish_alert(self, action: str, text: str, event: Event) -> None:
        msg = Alert(action=action, text=text, event=event_to_msg(event))
        msg.header.stamp = ns_to_stamp(event.end_ns)
        self._alerts_pub.publish(msg)
        self.get_logger().info(f"alert {action}: {text}")

    def request_recording(
        self, event: Event, duration_s: float, max_duration_s: float, pre_s: float
    ) -> str:
        client = self._recorder
        service = self.resolve_service_name(client.srv_name)
        timeout = self.params["recorder_timeout_s"]
        # Waiting here holds only this action's worker; it lets a pipeline whose recorder
        # starts after us (one launch file) record its first events.
        if not client.service_is_ready():
            if not client.wait_for_service(timeout_sec=timeout):
                raise ActionError(
                    f"no recorder: service {service} is not available (waited {timeout:g} s)"
                )
            # A recorder that just appeared has yet to match our reply reader.
            time.sleep(NEW_CLIENT_SETTLE_S)

        request = Record.Request(
            event_id=event.id,
            reason=f"{event.label} {event.stream}",
            pre_s=float(pre_s),
            duration_s=float(duration_s),
            max_duration_s=float(max_duration_s),
        )
        response = call_with_resend(client, request, timeout, resend_after=None)  # runs once
        if response is None:
            raise ActionError(f"recorder {service} did not answer in time")
        if not response.success:
            raise ActionError(f"recorder refused: {response.message}")
        return response.path

    # -- rules ------------------------------------------------------------------------------------
    def _load(self, path: str) -> RuleSet:
        rules = load_rules(path)
        # A rule may override what an action reads per firing, not the instance's filters.
        known = {
            name: set(r.action.properties()) - _FILTER_PROPERTIES
            for name, r in self.runners.items()
        }
        rules.check_actions(known)
        for rule in rules:
            action = self.runners[rule.action.name].action
            try:
                type(action).check_args(rule.action.args, rule.action.name)
            except ValueError as exc:
                raise RuleError(
                    str(exc), rule=rule.name, field="action", source=rules.source
                ) from exc
        return rules

    def _check_rules_param(self, params: list[Any]) -> Any:
        from rcl_interfaces.msg import SetParametersResult

        for p in params:
            if p.name == "rules_file" and p.value:
                try:
                    self._pending = self._load(p.value)
                except RuleError as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
            if p.name == "actions":
                if self._planned is not None:  # an earlier plan that was never applied
                    for action in self._planned[1].values():
                        action.close()
                    self._planned = None
                try:
                    self._planned = self._plan_actions(list(p.value))
                except ValueError as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _on_params(self, changed: Mapping[str, Any]) -> None:
        if "actions" in changed and self._planned is not None and self._apply_timer is None:
            self._apply_timer = self.create_timer(0.0, self._apply_planned_actions)
        if "rules_file" in changed:
            path = changed["rules_file"]
            rules = getattr(self, "_pending", None) if path else RuleSet(source="<none>")
            self._install(rules or RuleSet(source="<none>"), path)
        if "recorder_service" in changed:
            old, self._recorder = (
                self._recorder,
                self.create_client(Record, changed["recorder_service"]),
            )
            self.destroy_client(old)

    def _install(self, rules: RuleSet, path: str) -> None:
        with self._lock:
            self.rules = rules
            self.rules_error = ""
            self._rules_mtime = _mtime(path) if path else None
        self.get_logger().info(f"rules loaded: {len(rules)} from {path or 'nothing'}")

    def reload_rules(self) -> tuple[bool, str]:
        path = self.params["rules_file"]
        if not path:
            return False, "rules_file is not set"
        try:
            rules = self._load(path)
        except RuleError as exc:
            with self._lock:
                self.rules_error = str(exc)
                self._rules_mtime = _mtime(path)  # do not retry until the file changes again
            self.get_logger().error(f"rules not reloaded, keeping the last good ones: {exc}")
            return False, str(exc)
        self._install(rules, path)
        return True, f"{len(rules)} rules loaded from {path}"

    def _on_reload(self, _request: Trigger.Request, response: Trigger.Response) -> Any:
        response.success, response.message = self.reload_rules()
        return response

    def _watch(self) -> None:
        path = self.params["rules_file"]
        if path and self.params["watch_rules"] and _mtime(path) != self._rules_mtime:
            self.reload_rules()

    # -- events -----------------------------------------------------------------------------------
    def _on_event(self, msg: EventMsg) -> None:
        event = msg_to_event(msg)
        self._events += 1
        for rule in self.rules.match(event):
            self._matches += 1
            runner = self.runners.get(rule.action.name)
            if runner is None:  # check_actions makes this impossible; kept as a guard
                continue
            result = runner.submit(event, rule.action.args, rule.name)
            self._submit_counts[result] = self._submit_counts.get(result, 0) + 1

    def _status(self) -> diagnostics.Status:
        values: dict[str, object] = {
            "rules": len(self.rules),
            "rules file": self.params["rules_file"] or "-",
            "events": self._events,
            "rule matches": self._matches,
        }
        failing = []
        for name, runner in self.runners.items():
            s = runner.stats()
            values[f"{name}: fired/failed/dropped"] = f"{s.fired}/{s.failed}/{s.dropped}"
            if s.last_error:
                values[f"{name}: last error"] = s.last_error
            if s.failed or s.dropped:
                failing.append(name)
        if self.rules_error:
            return diagnostics.Status(
                diagnostics.WARN,
                f"rules file invalid, last good rules kept: {self.rules_error}",
                values,
            )
        if self.plugin_errors:
            values["plugin errors"] = "; ".join(self.plugin_errors)
            return diagnostics.Status(diagnostics.WARN, "some plugins failed to load", values)
        if failing:
            return diagnostics.Status(
                diagnostics.WARN, f"actions failing or dropping: {', '.join(failing)}", values
            )
        return diagnostics.Status(diagnostics.OK, f"{self._matches} rule matches", values)

    def close(self) -> None:
        for runner in self.runners.values():
            runner.close(timeout=2.0)


def _clean(value: Any) -> Any:
    """String arrays drop empty entries: [''] is how `ros2 param set` sends an empty list."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v for v in value if v.strip()]
    return value


def _mtime(path: str) -> float | None:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return None


def create_node(args: list[str]) -> ActionTriggerNode:
    """Single-process launch hook (``edge-vision launch --single-process``)."""
    return ActionTriggerNode(cli_args=args)


def main(args: list[str] | None = None) -> int:
    return run_node(ActionTriggerNode, args, threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
