"""Pipeline files: which nodes to start, with which names, parameters and remappings.

Both launch paths read the same file through this module, so they cannot drift:
``edge-vision launch PIPELINE.yaml`` (plain venv, see :mod:`edge_vision.core.supervisor`) and
``ros2 launch edge_vision pipeline.launch.py pipeline:=PIPELINE.yaml`` (ROS distro).

Schema (YAML; unknown keys are errors everywhere)::

    namespace: cam0           # optional, default "/" ; default namespace of every node
    env: {NAME: value}        # optional; extra environment for every node process
    nodes:                    # required, non-empty list
      - name: video_source    # required; ROS node name ([A-Za-z_][A-Za-z0-9_]*)
        executable: video_source  # required; a name in edge_vision/nodes/executables.txt
        namespace: cam0       # optional; replaces (does not nest in) the top-level one;
                              #   "" or "/" = root namespace
        parameters: {...}     # optional; inline parameters, override parameter_files
        parameter_files: [a.yaml]  # optional; ROS params YAML, relative to this file
        remappings: {from: to}     # optional; topic/service remappings
        respawn: true         # optional, default true; restart after a crash
        respawn_delay: 1.0    # optional, default 1.0 s; first restart delay (then doubles)
        args: []              # optional; extra command-line arguments (strings) for the node
        env: {NAME: value}    # optional; extra environment, overrides the top-level env

Parameter values are ROS parameter values: bool, int (64-bit), float, str, or a non-empty
list of one of those (ints mixed with floats become floats). Nested mappings are flattened
to dotted names (``roi: {x: 1}`` is parameter ``roi.x``); merging happens on flattened
names, so an inline ``roi.x`` overrides only that key of a file's ``roi``. ``null``, empty
lists and YAML dates are rejected because ROS has no type for them. Values keep their YAML
type: ``fps: 10`` is an integer and ROS refuses it for a parameter declared as double, so
write ``fps: 10.0``; quote strings that look like numbers or booleans (``'0123'``).

Parameter files use the ROS layout (``NODE_KEY: {ros__parameters: {...}}``, where a key
without ``ros__parameters`` nests a namespace). Node keys may use ``*`` (one name token)
and ``/**`` (any number of tokens). A key without a leading ``/`` matches from the root, as
in rcl, and also relative to the node's namespace (``video_source:`` matches
``/cam0/video_source``), so one file serves a node wherever it is namespaced.
Merge order: files in list order, within a file wildcard keys before exact keys, then the
inline ``parameters``. A file with no key matching the node is an error (likely a typo).

Each node becomes a :class:`NodeSpec`. The merged parameters are handed to ROS as a params
file keyed by the node's fully qualified name (``--params-file``) rather than as ``-p``
arguments, because the file is written with explicit quoting and keeps every value's type.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# The one executable -> module table (edge_vision/nodes/executables.txt, also read by
# CMakeLists.txt), re-exported here: the parser checks `executable:` against it.
# Importing edge_vision.nodes does not import rclpy.
from edge_vision.nodes import NODE_EXECUTABLES

__all__ = [
    "NODE_EXECUTABLES",
    "NodeSpec",
    "ParamValue",
    "Pipeline",
    "PipelineError",
    "apply_overrides",
    "format_param_value",
    "load_pipeline",
    "parse_pipeline",
]

ParamScalar = bool | int | float | str
ParamValue = ParamScalar | list[bool] | list[int] | list[float] | list[str]

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PARAM_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOPIC_RE = re.compile(r"^[A-Za-z0-9_/~{}]+$")
_YAML_UNSAFE_RE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff]")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

_TOP_KEYS = frozenset({"namespace", "env", "nodes"})
_NODE_KEYS = frozenset(
    {
        "name",
        "executable",
        "namespace",
        "parameters",
        "parameter_files",
        "remappings",
        "respawn",
        "respawn_delay",
        "args",
        "env",
    }
)


class PipelineError(ValueError):
    """An invalid pipeline file; the message names the file, node and field."""


@dataclass(frozen=True)
class NodeSpec:
    """One node of a pipeline, fully resolved (defaults applied, parameters merged)."""

    name: str
    executable: str
    module: str
    """Python module run as ``python -m MODULE`` (from NODE_EXECUTABLES)."""
    namespace: str = "/"
    """Absolute namespace: ``/`` or ``/a/b``."""
    parameters: dict[str, ParamValue] = field(default_factory=dict)
    """Flattened (dotted) names -> values; files merged first, inline values on top."""
    remappings: dict[str, str] = field(default_factory=dict)
    respawn: bool = True
    respawn_delay: float = 1.0
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    """Pipeline-level env merged with the node's own env."""

    @property
    def fully_qualified_name(self) -> str:
        return f"/{self.name}" if self.namespace == "/" else f"{self.namespace}/{self.name}"

    def params_yaml(self) -> str:
        """The merged parameters as a ROS params file keyed by the fully qualified name.

        Written by hand (not yaml.dump) so that every string is quoted: rcl types unquoted
        scalars itself and would turn a string like ``1e3`` or ``on`` into a number/bool.
        """
        lines = [f"{self.fully_qualified_name}:", "  ros__parameters:"]
        lines.extend(f"    {k}: {format_param_value(v)}" for k, v in self.parameters.items())
        if not self.parameters:
            lines[-1] += " {}"
        return "\n".join(lines) + "\n"

    def write_params_file(self, directory: str | os.PathLike[str]) -> Path | None:
        """Write :meth:`params_yaml` into ``directory``; None when there are no parameters."""
        if not self.parameters:
            return None
        stem = self.fully_qualified_name.strip("/").replace("/", "__")
        path = Path(directory) / f"{stem}.params.yaml"
        path.write_text(self.params_yaml(), encoding="utf-8")
        return path

    def ros_args(self, params_file: str | os.PathLike[str] | None = None) -> list[str]:
        """ROS command-line arguments: ``--ros-args -r __node:=.. -r __ns:=.. ...``.

        Pass the file from :meth:`write_params_file` as ``params_file``. Without one the
        parameters are given as ``-p name:=value`` with the same quoting as the file.
        """
        out = ["--ros-args", "-r", f"__node:={self.name}", "-r", f"__ns:={self.namespace}"]
        for src, dst in self.remappings.items():
            out += ["-r", f"{src}:={dst}"]
        if params_file is not None:
            out += ["--params-file", os.fspath(params_file)]
        else:
            for key, value in self.parameters.items():
                out += ["-p", f"{key}:={format_param_value(value)}"]
        return out

    def command(
        self, params_file: str | os.PathLike[str] | None = None, python: str | None = None
    ) -> list[str]:
        """Full command line running this node as a module of ``python`` (default: ours)."""
        return [
            python or sys.executable,
            "-m",
            self.module,
            *self.args,
            *self.ros_args(params_file),
        ]


@dataclass(frozen=True)
class Pipeline:
    path: Path | None
    """The file it came from (None when parsed from a mapping without a source)."""
    namespace: str
    env: dict[str, str]
    nodes: tuple[NodeSpec, ...]

    def node(self, selector: str) -> NodeSpec:
        """The node called ``selector`` (a node name or a fully qualified name)."""
        if selector.startswith("/"):
            found = [n for n in self.nodes if n.fully_qualified_name == selector]
        else:
            found = [n for n in self.nodes if n.name == selector]
        if not found:
            names = ", ".join(n.fully_qualified_name for n in self.nodes)
            raise KeyError(f"no node {selector!r} in the pipeline (nodes: {names})")
        if len(found) > 1:
            names = ", ".join(n.fully_qualified_name for n in found)
            raise KeyError(f"node name {selector!r} is ambiguous, use one of: {names}")
        return found[0]


def format_param_value(value: ParamValue) -> str:
    """A YAML flow scalar/sequence that rcl parses back to exactly this value and type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)  # shortest exact form, always with '.' or 'e': never an int
        mantissa, e, exponent = text.partition("e")
        # "1e-07" is a float to rcl but a string to YAML 1.1 readers (PyYAML): add ".0".
        return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text
    if isinstance(value, str):
        # A JSON string is a valid YAML double-quoted scalar, escapes included; JSON leaves a
        # few characters raw that YAML folds or forbids, so escape those too.
        text = json.dumps(value, ensure_ascii=False)
        return _YAML_UNSAFE_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return "[" + ", ".join(format_param_value(v) for v in value) + "]"


# --------------------------------------------------------------------------- loading


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys instead of keeping the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelineError(f"{what}: file not found: {path}") from None
    except OSError as exc:
        raise PipelineError(f"{what}: cannot read {path}: {exc.strerror}") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        raise PipelineError(f"{what}: invalid YAML in {path}: {exc}") from None


def load_pipeline(
    path: str | os.PathLike[str],
    overrides: Iterable[str] = (),
    executables: Mapping[str, str] | None = None,
) -> Pipeline:
    """Read and validate a pipeline file; ``overrides`` are ``NODE.PARAM=VALUE`` strings."""
    file = Path(path).expanduser()
    data = _read_yaml(file, str(file))
    pipeline = parse_pipeline(data, base_dir=file.parent, source=file, executables=executables)
    return apply_overrides(pipeline, overrides)


def parse_pipeline(
    data: Any,
    base_dir: str | os.PathLike[str] = ".",
    source: str | os.PathLike[str] | None = None,
    executables: Mapping[str, str] | None = None,
) -> Pipeline:
    """Validate an already-loaded pipeline mapping; relative files resolve from ``base_dir``."""
    table = NODE_EXECUTABLES if executables is None else executables
    src = str(source) if source is not None else "<pipeline>"
    if data is None:
        raise PipelineError(f"{src}: the file is empty; it needs at least a 'nodes' list")
    top = _mapping(data, src, "a mapping with a 'nodes' list")
    unknown = sorted(map(str, set(top) - _TOP_KEYS))
    if unknown:
        raise PipelineError(
            f"{src}: unknown top-level key(s) {', '.join(unknown)} "
            f"(allowed: {', '.join(sorted(_TOP_KEYS))})"
        )
    namespace = _namespace(top.get("namespace", "/"), f"{src}: namespace")
    env = _env(top.get("env", {}), f"{src}: env")
    raw_nodes = top.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise PipelineError(f"{src}: nodes: expected a non-empty list of nodes")

    nodes: list[NodeSpec] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_nodes):
        spec = _parse_node(raw, index, src, Path(base_dir), namespace, env, table)
        fqn = spec.fully_qualified_name
        if fqn in seen:
            raise PipelineError(
                f"{src}: nodes[{index}] ({spec.name}): name: duplicate node {fqn} "
                f"(also nodes[{seen[fqn]}]); names must be unique within a namespace"
            )
        seen[fqn] = index
        nodes.append(spec)
    return Pipeline(
        path=Path(source) if source is not None else None,
        namespace=namespace,
        env=env,
        nodes=tuple(nodes),
    )


def apply_overrides(pipeline: Pipeline, overrides: Iterable[str]) -> Pipeline:
    """Apply ``NODE.PARAM=VALUE`` overrides (``edge-vision launch --set``).

    NODE is a node name or fully qualified name, PARAM may be dotted, VALUE is parsed as a
    YAML scalar/flow list (``fps=10.0``, ``loop=false``, ``uri="'123'"`` for a string).
    """
    nodes = list(pipeline.nodes)
    for item in overrides:
        what = f"--set {item}"
        lhs, sep, text = item.partition("=")
        selector, dot, param = lhs.strip().partition(".")
        if not sep or not dot or not selector or not param:
            raise PipelineError(f"{what}: expected NODE.PARAM=VALUE")
        try:
            target = pipeline.node(selector)
        except KeyError as exc:
            raise PipelineError(f"{what}: {exc.args[0]}") from None
        try:
            raw = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raw = text  # not YAML at all: take it literally as a string
        values = _flatten_params({param: raw}, f"--set {selector}")
        fqn = target.fully_qualified_name
        i = next(k for k, n in enumerate(nodes) if n.fully_qualified_name == fqn)
        nodes[i] = dataclasses.replace(nodes[i], parameters={**nodes[i].parameters, **values})
    return dataclasses.replace(pipeline, nodes=tuple(nodes))


# --------------------------------------------------------------------------- validation


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _mapping(value: Any, where: str, expected: str = "a mapping") -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise PipelineError(f"{where}: expected {expected}, got {_type_name(value)}")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise PipelineError(f"{where}: expected a string, got {_type_name(value)} {value!r}")
    return value


def _namespace(value: Any, where: str) -> str:
    text = _str(value, where).strip()
    if text in ("", "/"):
        return "/"
    tokens = text.strip("/").split("/")
    if text.startswith("//") or text.endswith("//") or not all(_NAME_RE.match(t) for t in tokens):
        raise PipelineError(
            f"{where}: invalid namespace {value!r} (tokens of letters, digits and '_' "
            "separated by '/', not starting with a digit)"
        )
    return "/" + "/".join(tokens)


def _env(value: Any, where: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for key, val in _mapping(value, where).items():
        if not isinstance(key, str) or not _ENV_RE.match(key):
            raise PipelineError(f"{where}: invalid variable name {key!r}")
        # bools are refused because true/True/1 would all be guesses of what the user meant
        if isinstance(val, bool) or not isinstance(val, (str, int, float)):
            raise PipelineError(
                f"{where}.{key}: expected a string or number, got {_type_name(val)} "
                "(quote it to pass it literally)"
            )
        env[key] = str(val)
    return env


def _param_value(value: Any, where: str) -> ParamValue:
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise PipelineError(f"{where}: integer {value} does not fit in 64 bits")
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, (list, tuple)):
        if not value:
            raise PipelineError(
                f"{where}: empty lists have no ROS parameter type; "
                "leave the parameter out to use the node's default"
            )
        items = [_param_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if any(isinstance(v, list) for v in items):
            raise PipelineError(f"{where}: nested lists are not ROS parameter values")
        kinds = {type(v) for v in items}
        if kinds == {int, float}:
            return [float(v) for v in items]  # type: ignore[arg-type]
        if len(kinds) > 1:
            names = ", ".join(sorted(k.__name__ for k in kinds))
            raise PipelineError(f"{where}: list mixes types ({names}); ROS lists are uniform")
        return items  # type: ignore[return-value]
    if value is None:
        raise PipelineError(
            f"{where}: null is not a ROS parameter value; "
            "leave the parameter out to use the node's default, or write '' for an empty string"
        )
    raise PipelineError(
        f"{where}: unsupported value {value!r} of type {_type_name(value)}; "
        "quote it to make it a string"
    )


def _flatten_params(
    params: Mapping[Any, Any], where: str, prefix: str = ""
) -> dict[str, ParamValue]:
    out: dict[str, ParamValue] = {}
    for key, value in params.items():
        if not isinstance(key, str):
            raise PipelineError(f"{where}: parameter name {key!r} is not a string")
        name = f"{prefix}{key}"
        if not _PARAM_RE.match(name):
            raise PipelineError(f"{where}: invalid parameter name {name!r}")
        if isinstance(value, dict):
            if not value:
                raise PipelineError(f"{where}.{name}: empty mapping is not a parameter value")
            out.update(_flatten_params(value, where, f"{name}."))
        else:
            out[name] = _param_value(value, f"{where}.{name}")
    return out


def _match_node_key(pattern: str, fqn: str, namespace: str) -> bool:
    if not pattern.startswith("/"):
        # rcl reads a relative key from the root; we also try it in the node's namespace.
        relative = f"{namespace.rstrip('/')}/{pattern}"
        return _match_node_key(f"/{pattern}", fqn, namespace) or _match_node_key(
            relative, fqn, namespace
        )
    want = [t for t in pattern.split("/") if t]
    have = [t for t in fqn.split("/") if t]

    def match(i: int, j: int) -> bool:
        if i == len(want):
            return j == len(have)
        if want[i] == "**":  # any number of tokens, including none
            return any(match(i + 1, k) for k in range(j, len(have) + 1))
        return j < len(have) and fnmatch.fnmatchcase(have[j], want[i]) and match(i + 1, j + 1)

    return match(0, 0)


def _param_file_entries(
    data: Any, where: str, prefix: str = ""
) -> list[tuple[str, dict[Any, Any]]]:
    """(node key, ros__parameters) pairs of a ROS params file, namespaces un-nested."""
    entries: list[tuple[str, dict[Any, Any]]] = []
    for key, value in _mapping(data, where).items():
        if not isinstance(key, str) or not key.strip("/"):
            raise PipelineError(f"{where}: invalid node key {key!r}")
        node_key = f"{prefix}/{key}" if prefix else key
        body = _mapping(value, f"{where}: {node_key}")
        if "ros__parameters" in body:
            extra = sorted(map(str, set(body) - {"ros__parameters"}))
            if extra:
                raise PipelineError(
                    f"{where}: {node_key}: unexpected key(s) {', '.join(extra)} "
                    "next to ros__parameters"
                )
            params = _mapping(body["ros__parameters"] or {}, f"{where}: {node_key}.ros__parameters")
            entries.append((node_key, params))
        else:
            entries.extend(_param_file_entries(body, where, node_key))
    return entries


def _parse_node(
    raw: Any,
    index: int,
    src: str,
    base_dir: Path,
    default_ns: str,
    top_env: dict[str, str],
    table: Mapping[str, str],
) -> NodeSpec:
    where = f"{src}: nodes[{index}]"
    node = _mapping(raw, where)
    name_raw = node.get("name")
    if isinstance(name_raw, str) and name_raw:
        where = f"{where} ({name_raw})"
    unknown = sorted(map(str, set(node) - _NODE_KEYS))
    if unknown:
        raise PipelineError(
            f"{where}: unknown key(s) {', '.join(unknown)} "
            f"(allowed: {', '.join(sorted(_NODE_KEYS))})"
        )
    for required in ("name", "executable"):
        if required not in node:
            raise PipelineError(f"{where}: {required}: missing (required)")

    name = _str(node["name"], f"{where}: name")
    if not _NAME_RE.match(name):
        raise PipelineError(
            f"{where}: name: invalid node name {name!r} "
            "(letters, digits and '_', not starting with a digit)"
        )
    executable = _str(node["executable"], f"{where}: executable")
    if executable not in table:
        raise PipelineError(
            f"{where}: executable: unknown executable {executable!r} "
            f"(known: {', '.join(sorted(table)) or 'none'})"
        )
    namespace = (
        _namespace(node["namespace"], f"{where}: namespace") if "namespace" in node else default_ns
    )
    fqn = f"/{name}" if namespace == "/" else f"{namespace}/{name}"

    files_raw = node.get("parameter_files", [])
    if not isinstance(files_raw, list):
        raise PipelineError(
            f"{where}: parameter_files: expected a list of paths, got {_type_name(files_raw)}"
        )
    parameters: dict[str, ParamValue] = {}
    for i, entry in enumerate(files_raw):
        fwhere = f"{where}: parameter_files[{i}]"
        path = Path(_str(entry, fwhere)).expanduser()
        if not path.is_absolute():
            path = base_dir / path
        fwhere = f"{fwhere} ({path})"
        data = _read_yaml(path, fwhere)
        entries = _param_file_entries(data if data is not None else {}, fwhere)
        matching = [(k, p) for k, p in entries if _match_node_key(k, fqn, namespace)]
        if not matching:
            keys = ", ".join(k for k, _ in entries) or "none"
            raise PipelineError(f"{fwhere}: no entry matches node {fqn} (keys: {keys})")
        # Wildcard keys first so that an exact key for this node wins, as in rclcpp.
        matching.sort(key=lambda kp: 0 if "*" in kp[0] else 1)
        for key, params in matching:
            parameters.update(_flatten_params(params, f"{fwhere}: {key}"))
    inline = _mapping(node.get("parameters", {}), f"{where}: parameters")
    parameters.update(_flatten_params(inline, f"{where}: parameters"))

    remappings: dict[str, str] = {}
    for src_name, dst in _mapping(node.get("remappings", {}), f"{where}: remappings").items():
        rwhere = f"{where}: remappings.{src_name}"
        for text in (src_name, dst):
            if not isinstance(text, str) or not _TOPIC_RE.match(text):
                raise PipelineError(f"{rwhere}: invalid name {text!r}, expected a topic name")
        if src_name.startswith("__"):
            raise PipelineError(f"{rwhere}: special names are set by the name/namespace fields")
        remappings[src_name] = dst

    respawn = node.get("respawn", True)
    if not isinstance(respawn, bool):
        raise PipelineError(f"{where}: respawn: expected true or false, got {respawn!r}")
    delay = node.get("respawn_delay", 1.0)
    if isinstance(delay, bool) or not isinstance(delay, (int, float)):
        raise PipelineError(f"{where}: respawn_delay: expected seconds (a number), got {delay!r}")
    if not math.isfinite(delay) or delay < 0:
        raise PipelineError(f"{where}: respawn_delay: must be a finite number >= 0, got {delay}")

    args_raw = node.get("args", [])
    if not isinstance(args_raw, list) or not all(isinstance(a, str) for a in args_raw):
        raise PipelineError(
            f"{where}: args: expected a list of strings (quote numbers), got {args_raw!r}"
        )

    env = {**top_env, **_env(node.get("env", {}), f"{where}: env")}
    return NodeSpec(
        name=name,
        executable=executable,
        module=table[executable],
        namespace=namespace,
        parameters=parameters,
        remappings=remappings,
        respawn=respawn,
        respawn_delay=float(delay),
        args=tuple(args_raw),
        env=env,
    )
