"""``edge-vision prompt``: show or replace a running open_vocab_detector's prompt.

    edge-vision prompt "a person, a hat" --thresholds 0.1,0.2 [--node /ns/open_vocab_detector]
    edge-vision prompt                                  # print the serving prompt

Objects are comma-separated; ``--thresholds`` takes one per object or one for all (none: the
default, 0.1). The text is checked here first (a typo fails fast, with the reason), then sent to
the node's ``~/set_prompt``, which applies the node's own limits. Exit codes: 0 done, 1 the node
refused the prompt, 2 usage or an invalid prompt, 3 the node did not answer.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["register"]

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
DEFAULT_NODE = "/open_vocab_detector"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "prompt",
        help="show or set an open_vocab_detector's prompt",
        description="Show or replace the prompt of a running open_vocab_detector node.",
    )
    parser.add_argument(
        "objects", nargs="?", help='comma-separated objects, e.g. "a person, a hat"'
    )
    parser.add_argument(
        "--thresholds", "-t", default=None, help="comma-separated: one per object, or one for all"
    )
    parser.add_argument(
        "--node", default=DEFAULT_NODE, help=f"the node's full name (default {DEFAULT_NODE})"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the node")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from edge_vision.models.open_vocab import Prompt, PromptError

    node = args.node if args.node.startswith("/") else "/" + args.node
    objects: list[str] = []
    thresholds: list[float] = []
    if args.objects is not None:
        try:
            Prompt.parse(args.objects, args.thresholds)  # fail fast on what we can check here
        except PromptError as exc:
            print(f"invalid prompt: {exc}", file=sys.stderr)
            return EXIT_USAGE
        objects = [o.strip() for o in args.objects.split(",")]
        if args.thresholds and args.thresholds.strip():
            thresholds = [float(t) for t in args.thresholds.split(",")]
    elif args.thresholds is not None:
        print("--thresholds needs objects", file=sys.stderr)
        return EXIT_USAGE

    from edge_vision.core.dds import apply_discovery_defaults

    apply_discovery_defaults(os.environ)  # loopback unless the user chose otherwise
    import rclpy

    rclpy.init(args=[sys.argv[0]])
    client = rclpy.create_node("edge_vision_prompt_cli")
    try:
        if args.objects is None:
            return _show(client, node, args.timeout)
        return _set(client, node, objects, thresholds, args.timeout)
    finally:
        client.destroy_node()
        rclpy.try_shutdown()


def _call(client: Any, srv_type: type, name: str, request: Any, timeout: float) -> Any:
    import rclpy

    from edge_vision.ros.services import call_with_resend, default_resend_after

    cli = client.create_client(srv_type, name)
    try:
        if not cli.wait_for_service(timeout_sec=timeout):
            return None
        return call_with_resend(
            cli,
            request,
            timeout,
            resend_after=default_resend_after(srv_type),
            spin=lambda seconds: rclpy.spin_once(client, timeout_sec=seconds),
        )
    finally:
        client.destroy_client(cli)


def _set(
    client: Any, node: str, objects: list[str], thresholds: list[float], timeout: float
) -> int:
    from edge_vision.srv import SetPrompt

    request = SetPrompt.Request(objects=objects, thresholds=thresholds)
    reply = _call(client, SetPrompt, f"{node}/set_prompt", request, timeout)
    if reply is None:
        print(f"{node}/set_prompt did not answer in {timeout:g} s", file=sys.stderr)
        return EXIT_UNREACHABLE
    if not reply.success:
        print(f"refused: {reply.message}", file=sys.stderr)
        print(f"still serving: {_format(reply.objects, reply.thresholds)}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"serving: {_format(reply.objects, reply.thresholds)}")
    return 0


def _show(client: Any, node: str, timeout: float) -> int:
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    from edge_vision.models.open_vocab import DEFAULT_THRESHOLD

    request = GetParameters.Request(names=["objects", "thresholds"])
    reply = _call(client, GetParameters, f"{node}/get_parameters", request, timeout)
    if reply is None or len(reply.values) != 2:
        print(f"{node} did not answer in {timeout:g} s", file=sys.stderr)
        return EXIT_UNREACHABLE
    objects, thresholds = (parameter_value_to_python(v) for v in reply.values)
    thresholds = list(thresholds or [])
    if len(thresholds) <= 1:  # one for all (or the default): show it per object
        thresholds = thresholds * len(objects) if thresholds else [DEFAULT_THRESHOLD] * len(objects)
    print(f"serving: {_format(objects, thresholds)}")
    return 0


def _format(objects: Sequence[str], thresholds: Sequence[float]) -> str:
    return ", ".join(f"{o} ({t:.3g})" for o, t in zip(objects, thresholds, strict=False))
