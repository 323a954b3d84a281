"""``edge-vision launch PIPELINE.yaml``: start a pipeline without the ROS ``launch`` package.

By default every node is its own process under :class:`edge_vision.core.supervisor.Supervisor`.
``--single-process`` instead loads every node into this process and spins them together in
one ``MultiThreadedExecutor`` (less memory and start-up time, zero-copy-friendly; but a crash
takes down the whole pipeline and nothing is respawned).

Node module contract (every module in ``NODE_EXECUTABLES``)::

    def create_node(args: list[str]) -> rclpy.node.Node: ...
    def main(args: list[str] | None = None) -> int | None: ...
    if __name__ == "__main__":
        sys.exit(main())

``create_node(args)``: ``args`` is the node's command line without the program name, the
node's own arguments first, then ``--ros-args ...`` (name, namespace, remappings,
``--params-file``). It must pass ``args`` unchanged as ``cli_args=args`` to the
``rclpy.node.Node`` constructor (rcl applies the ROS arguments to that node only and ignores
the rest), read its own arguments from ``rclpy.utilities.remove_ros_args(args)``, and
declare its parameters. It must not call ``rclpy.init``/``shutdown``, spin, or install signal
handlers: the caller owns the context and the executor.

``main(args)``: the console-script / ``python -m`` entry point; ``args`` is a full argv
(program name first), ``sys.argv`` when None. It inits rclpy, builds the node, spins until
SIGINT/SIGTERM and returns the exit code (``edge_vision.ros.node_main.run_node`` does all
this): 0 after Ctrl-C/SIGTERM or when the node has finished its work (not respawned), 2 for
a configuration error (not respawned: a restart cannot fix it), anything else for a crash
(respawned with backoff). It must stop within a few seconds of SIGINT (the supervisor then
sends SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_vision.core.pipeline import NodeSpec, Pipeline, PipelineError, load_pipeline
from edge_vision.core.supervisor import ProcessSpec, Supervisor, apply_discovery_defaults

if TYPE_CHECKING:
    from rclpy.node import Node

__all__ = ["node_args", "register", "run", "run_single_process", "run_supervised"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "launch",
        help="start the nodes of a pipeline file",
        description="Start the nodes of a pipeline file (see docs/launching.md).",
    )
    parser.add_argument("pipeline", type=Path, help="pipeline YAML file, e.g. config/demo.yaml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="NODE.PARAM=VALUE",
        help="override a parameter; VALUE is YAML (fps=10.0, loop=false); repeatable",
    )
    parser.add_argument(
        "--single-process",
        action="store_true",
        help="run all nodes in this process with one multi-threaded executor (no respawn)",
    )
    parser.add_argument("--no-respawn", action="store_true", help="do not restart nodes that crash")
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="time a node gets for each shutdown step (SIGINT, SIGTERM) before the next",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the command lines and parameter files instead of running",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        pipeline = load_pipeline(args.pipeline, overrides=args.overrides)
    except PipelineError as exc:
        print(f"edge-vision launch: error: {exc}", file=sys.stderr)
        return 2
    if args.no_respawn:
        nodes = tuple(dataclasses.replace(n, respawn=False) for n in pipeline.nodes)
        pipeline = dataclasses.replace(pipeline, nodes=nodes)
    if args.dry_run:
        _print_plan(pipeline)
        return 0
    if args.single_process:
        return run_single_process(pipeline)
    return run_supervised(pipeline, stop_timeout=args.stop_timeout)


def node_args(spec: NodeSpec, params_file: str | os.PathLike[str] | None) -> list[str]:
    """The ``args`` given to ``create_node``: what ``main`` would see after the program."""
    return [*spec.args, *spec.ros_args(params_file)]


def run_supervised(pipeline: Pipeline, stop_timeout: float = 5.0) -> int:
    """One process per node under the supervisor; returns its exit code."""
    labels = _labels(pipeline)
    with tempfile.TemporaryDirectory(prefix="edge_vision_params_") as params_dir:
        processes = [
            ProcessSpec.from_node(spec, params_dir, label)
            for spec, label in zip(pipeline.nodes, labels, strict=True)
        ]
        return Supervisor(processes, stop_timeout=stop_timeout).run()


def run_single_process(pipeline: Pipeline) -> int:
    """All nodes in this process, spun by one ``MultiThreadedExecutor``."""
    env: dict[str, str] = {}
    for spec in pipeline.nodes:
        for key, value in spec.env.items():
            if env.get(key, value) != value:
                print(
                    f"edge-vision launch: error: --single-process: nodes set {key} to different "
                    "values; one process has one environment",
                    file=sys.stderr,
                )
                return 2
            env[key] = value
    os.environ.update(env)
    apply_discovery_defaults(os.environ)  # before rclpy.init, which reads discovery settings

    modules: list[Any] = []
    for spec in pipeline.nodes:
        module = importlib.import_module(spec.module)
        if not callable(getattr(module, "create_node", None)):
            print(
                f"edge-vision launch: error: {spec.module} has no create_node(args); "
                "it cannot run with --single-process",
                file=sys.stderr,
            )
            return 2
        modules.append(module)

    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    rclpy.init(args=[sys.argv[0]])  # node arguments are per node, none are global
    executor = MultiThreadedExecutor()
    nodes: list[Node] = []
    code = 0
    with tempfile.TemporaryDirectory(prefix="edge_vision_params_") as params_dir:
        try:
            for spec, module in zip(pipeline.nodes, modules, strict=True):
                params_file = spec.write_params_file(params_dir)
                node = module.create_node(node_args(spec, params_file))
                nodes.append(node)
                executor.add_node(node)
                print(f"[edge-vision] started {node.get_fully_qualified_name()}", flush=True)
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass  # Ctrl-C / SIGTERM: rclpy's handler shut the context down
        except Exception as exc:  # a node failed to build or a callback raised
            print(f"edge-vision launch: error: {type(exc).__name__}: {exc}", file=sys.stderr)
            code = 1
        finally:
            try:
                executor.shutdown()
                for node in nodes:
                    close = getattr(node, "close", None)  # EdgeVisionNode's resource hook
                    if callable(close):
                        close()
                    node.destroy_node()
                rclpy.try_shutdown()
            except KeyboardInterrupt:
                code = code or 130  # a second Ctrl-C: the user does not want to wait
    return code


def _labels(pipeline: Pipeline) -> list[str]:
    """Output prefixes: the node name, or the full name where a name is used twice."""
    names = [n.name for n in pipeline.nodes]
    return [n.name if names.count(n.name) == 1 else n.fully_qualified_name for n in pipeline.nodes]


def _print_plan(pipeline: Pipeline) -> None:
    for spec, label in zip(pipeline.nodes, _labels(pipeline), strict=True):
        params_file = "PARAMS_FILE" if spec.parameters else None  # written at launch time
        print(f"# {label}: respawn={spec.respawn} respawn_delay={spec.respawn_delay}")
        for key, value in spec.env.items():
            print(f"#   env {key}={value}")
        print(shlex.join(spec.command(params_file)))
        if params_file:
            print(f"# {params_file}:")
            print("".join(f"#   {line}\n" for line in spec.params_yaml().splitlines()), end="")
