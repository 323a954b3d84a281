"""`ros2 launch` twin of `edge-vision launch`: start an edge_vision pipeline file on a ROS distro.

    ros2 launch edge_vision pipeline.launch.py [pipeline:=path/to/pipeline.yaml]

The file is parsed by edge_vision.core.pipeline, the same code `edge-vision launch` uses, so the
two paths read a pipeline identically (docs/launching.md).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from ament_index_python.packages import get_package_share_directory

# Submodule imports: ruff's isort would take a bare `launch` for this repo's launch/ folder.
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.launch_context import LaunchContext
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from edge_vision.core.pipeline import load_pipeline
from edge_vision.core.supervisor import apply_discovery_defaults


def _nodes(context: LaunchContext) -> list[Node]:
    pipeline = load_pipeline(LaunchConfiguration("pipeline").perform(context))
    # Parameters go to ROS as our own params file, not as a dict: launch_ros would re-type
    # string values through YAML ('123' -> 123). Respawned nodes re-read it, so keep it until exit.
    params_dir = tempfile.mkdtemp(prefix="edge_vision_params_")
    atexit.register(shutil.rmtree, params_dir, ignore_errors=True)
    actions = []
    for spec in pipeline.nodes:
        params_file = spec.write_params_file(params_dir)
        # Same environment as under `edge-vision launch`: DDS on loopback unless chosen.
        env = {**os.environ, **spec.env}
        apply_discovery_defaults(env)
        actions.append(
            Node(
                package="edge_vision",
                executable=spec.executable,
                name=spec.name,
                namespace=spec.namespace,
                parameters=[str(params_file)] if params_file else [],
                remappings=list(spec.remappings.items()),
                arguments=list(spec.args),
                additional_env={k: v for k, v in env.items() if os.environ.get(k) != v},
                respawn=spec.respawn,
                respawn_delay=spec.respawn_delay,
                output="screen",
            )
        )
    return actions


def generate_launch_description() -> LaunchDescription:
    default = os.path.join(get_package_share_directory("edge_vision"), "config", "demo.yaml")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "pipeline", default_value=default, description="pipeline YAML file"
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
