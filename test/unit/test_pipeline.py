"""Pipeline file parsing: schema, errors, parameter merging and the ROS command line."""

from __future__ import annotations

import importlib.util
import math
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_vision.cli.main import main as cli_main
from edge_vision.core.pipeline import (
    NODE_EXECUTABLES,
    NodeSpec,
    PipelineError,
    apply_overrides,
    format_param_value,
    load_pipeline,
    parse_pipeline,
)

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def node(**fields: Any) -> dict[str, Any]:
    return {"name": "cam", "executable": "video_source", **fields}


def test_valid_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.yaml",
        """\
        namespace: site1
        env: {FOO: bar, LEVEL: 3}
        nodes:
          - name: source
            executable: video_source
            parameters: {uri: /videos/a.mp4, loop: true, fps: 12.5}
            remappings: {image_raw: /cam0/image}
            respawn: false
            respawn_delay: 2
            args: [--verbose]
            env: {FOO: baz}
          - name: source
            executable: video_source
            namespace: /cam1/
          - name: root_node
            executable: video_source
            namespace: ""
        """,
    )
    pipeline = load_pipeline(path)
    assert pipeline.namespace == "/site1"
    assert pipeline.env == {"FOO": "bar", "LEVEL": "3"}
    first, second, third = pipeline.nodes
    assert first == NodeSpec(
        name="source",
        executable="video_source",
        module=NODE_EXECUTABLES["video_source"],
        namespace="/site1",
        parameters={"uri": "/videos/a.mp4", "loop": True, "fps": 12.5},
        remappings={"image_raw": "/cam0/image"},
        respawn=False,
        respawn_delay=2.0,
        args=("--verbose",),
        env={"FOO": "baz", "LEVEL": "3"},
    )
    # Same name in another namespace is fine; node namespace replaces the top-level one.
    assert second.fully_qualified_name == "/cam1/source"
    assert second.respawn is True and second.respawn_delay == 1.0 and second.parameters == {}
    assert third.namespace == "/" and third.fully_qualified_name == "/root_node"


def test_shipped_demo_pipeline_is_valid() -> None:
    pipeline = load_pipeline(REPO / "config" / "demo.yaml")
    source, detector, monitor = pipeline.nodes
    assert source.executable == "video_source" and source.namespace == "/cam0"
    assert source.parameters["uri"] == "/usr/share/doc/opencv-doc/examples/data/vtest.avi"
    assert source.parameters["loop"] is True
    # The detector reads the source's frames; the monitor watches the detector's overlay.
    assert detector.executable == "detector" and detector.remappings == {"image": "image_raw"}
    assert monitor.executable == "image_monitor" and monitor.namespace == "/cam0"
    assert monitor.parameters["topic"] == "overlay"


def test_every_table_module_exists() -> None:
    assert "video_source" in NODE_EXECUTABLES
    for executable, module in NODE_EXECUTABLES.items():
        assert importlib.util.find_spec(module) is not None, executable


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"nodes": [node()], "nmespace": "x"}, ["unknown top-level key(s) nmespace"]),
        ({"namespace": "cam0"}, ["nodes: expected a non-empty list"]),
        ({"nodes": []}, ["nodes: expected a non-empty list"]),
        ({"nodes": ["cam"]}, ["nodes[0]: expected a mapping, got str"]),
        ({"nodes": [node(paramters={})]}, ["nodes[0] (cam): unknown key(s) paramters"]),
        ({"nodes": [{"executable": "video_source"}]}, ["nodes[0]: name: missing"]),
        ({"nodes": [{"name": "cam"}]}, ["nodes[0] (cam): executable: missing"]),
        ({"nodes": [node(name=5)]}, ["nodes[0]: name: expected a string, got int"]),
        ({"nodes": [node(name="1cam")]}, ["nodes[0] (1cam): name: invalid node name"]),
        (
            {"nodes": [node(), node(name="b", executable="detectr")]},
            ["nodes[1] (b): executable: unknown executable 'detectr'", "video_source"],
        ),
        ({"nodes": [node(namespace="a//b")]}, ["nodes[0] (cam): namespace: invalid namespace"]),
        ({"nodes": [node(namespace="cam-0")]}, ["nodes[0] (cam): namespace: invalid"]),
        ({"nodes": [node(parameters=[1])]}, ["nodes[0] (cam): parameters: expected a mapping"]),
        ({"nodes": [node(parameters={"fps": None})]}, ["nodes[0] (cam): parameters.fps: null"]),
        ({"nodes": [node(parameters={"ids": []})]}, ["parameters.ids: empty lists"]),
        ({"nodes": [node(parameters={"ids": [1, "a"]})]}, ["parameters.ids: list mixes"]),
        ({"nodes": [node(parameters={"ids": [[1]]})]}, ["parameters.ids: nested lists"]),
        ({"nodes": [node(parameters={"big": 2**63})]}, ["parameters.big: integer"]),
        ({"nodes": [node(parameters={"bad-name": 1})]}, ["invalid parameter name 'bad-name'"]),
        ({"nodes": [node(remappings=["a", "b"])]}, ["nodes[0] (cam): remappings: expected"]),
        ({"nodes": [node(remappings={"a": 1})]}, ["nodes[0] (cam): remappings.a: invalid"]),
        ({"nodes": [node(remappings={"__ns": "/x"})]}, ["remappings.__ns: special names"]),
        ({"nodes": [node(respawn="yes")]}, ["nodes[0] (cam): respawn: expected true or false"]),
        ({"nodes": [node(respawn_delay=-1)]}, ["nodes[0] (cam): respawn_delay: must be"]),
        ({"nodes": [node(respawn_delay="1s")]}, ["nodes[0] (cam): respawn_delay: expected"]),
        ({"nodes": [node(args=["-v", 3])]}, ["nodes[0] (cam): args: expected a list of strings"]),
        ({"nodes": [node(env={"X": True})]}, ["nodes[0] (cam): env.X: expected a string"]),
        ({"nodes": [node()], "env": {"1X": "a"}}, ["env: invalid variable name '1X'"]),
        (
            {"nodes": [node(), node(name="other"), node(namespace="/")], "namespace": "/"},
            ["nodes[2] (cam): name: duplicate node /cam", "also nodes[0]"],
        ),
        (
            {"nodes": [node(parameter_files="a.yaml")]},
            ["nodes[0] (cam): parameter_files: expected a list"],
        ),
        (
            {"nodes": [node(parameter_files=["missing.yaml"])]},
            ["nodes[0] (cam): parameter_files[0]", "file not found", "missing.yaml"],
        ),
    ],
)
def test_errors_name_node_and_field(
    tmp_path: Path, data: dict[str, Any], expected: list[str]
) -> None:
    with pytest.raises(PipelineError) as info:
        parse_pipeline(data, base_dir=tmp_path, source="p.yaml")
    message = str(info.value)
    assert message.startswith("p.yaml: ")
    for part in expected:
        assert part in message


def test_yaml_level_errors(tmp_path: Path) -> None:
    dup = write(tmp_path / "dup.yaml", "nodes:\n  - name: a\n    name: b\n")
    with pytest.raises(PipelineError, match="duplicate key 'name'"):
        load_pipeline(dup)
    date = write(tmp_path / "date.yaml", "nodes:\n  - {name: a, executable: video_source,")
    with pytest.raises(PipelineError, match="invalid YAML"):
        load_pipeline(date)
    stamp = write(
        tmp_path / "stamp.yaml",
        "nodes:\n  - {name: a, executable: video_source, parameters: {day: 2024-01-02}}\n",
    )
    with pytest.raises(PipelineError, match=r"parameters\.day: unsupported value .* quote it"):
        load_pipeline(stamp)
    with pytest.raises(PipelineError, match="file not found"):
        load_pipeline(tmp_path / "nope.yaml")
    with pytest.raises(PipelineError, match="empty"):
        load_pipeline(write(tmp_path / "empty.yaml", "# nothing\n"))


def test_parameter_files_merge_and_resolve_relative_to_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        tmp_path / "cfg" / "params" / "base.yaml",
        """\
        /cam0/source:                 # exact key: wins over the wildcard below
          ros__parameters:
            fps: 5.0
            roi: {x: 1, y: 2}
        /**:
          ros__parameters:
            fps: 1.0
            frame_id: base
            encoding: rgb8
        other_node:
          ros__parameters: {fps: 99.0}
        """,
    )
    write(
        tmp_path / "cfg" / "params" / "site.yaml",
        """\
        cam0:                         # nested namespace form
          source:
            ros__parameters:
              frame_id: site
              roi.y: 3
        """,
    )
    write(
        tmp_path / "cfg" / "params" / "relative.yaml",
        # no leading slash: resolved in the node's namespace (/cam0/source)
        "source:\n  ros__parameters: {width: 640}\n",
    )
    pipeline_file = write(
        tmp_path / "cfg" / "pipe.yaml",
        """\
        namespace: cam0
        nodes:
          - name: source
            executable: video_source
            parameter_files: [params/base.yaml, params/site.yaml, params/relative.yaml]
            parameters: {encoding: mono8, roi: {x: 7}}
        """,
    )
    monkeypatch.chdir(tmp_path)  # relative to the pipeline file, not the working directory
    (spec,) = load_pipeline(Path("cfg/pipe.yaml")).nodes
    assert spec.parameters == {
        "fps": 5.0,
        "frame_id": "site",
        "encoding": "mono8",
        "roi.x": 7,
        "roi.y": 3,
        "width": 640,
    }
    # A file whose keys match no entry for this node is almost certainly a typo.
    write(tmp_path / "cfg" / "params" / "wrong.yaml", "/cam1/source:\n  ros__parameters: {a: 1}\n")
    text = pipeline_file.read_text().replace("params/relative.yaml", "params/wrong.yaml")
    expected = r"nodes\[0\] \(source\): parameter_files\[2\].*no entry matches node /cam0/source"
    with pytest.raises(PipelineError, match=expected):
        load_pipeline(write(tmp_path / "cfg" / "pipe2.yaml", text))


def test_parameter_file_structure_errors(tmp_path: Path) -> None:
    write(tmp_path / "bad.yaml", "/**:\n  ros__parameters: {a: 1}\n  extra: 2\n")
    data = {"nodes": [node(parameter_files=["bad.yaml"])]}
    with pytest.raises(PipelineError, match=r"nodes\[0\] \(cam\): parameter_files\[0\].*extra"):
        parse_pipeline(data, base_dir=tmp_path)
    write(tmp_path / "badval.yaml", "/**:\n  ros__parameters: {a: null}\n")
    data = {"nodes": [node(parameter_files=["badval.yaml"])]}
    with pytest.raises(PipelineError, match=r"parameter_files\[0\].*/\*\*.*\.a: null"):
        parse_pipeline(data, base_dir=tmp_path)


def test_ros_args_and_command(tmp_path: Path) -> None:
    data = {
        "namespace": "cam0",
        "nodes": [
            node(
                parameters={"uri": "0123", "loop": False},
                remappings={"image_raw": "/cam0/image", "~/get_info": "info"},
                args=["--flag"],
            )
        ],
    }
    (spec,) = parse_pipeline(data).nodes
    params_file = spec.write_params_file(tmp_path)
    assert params_file is not None and params_file.parent == tmp_path
    expected_head = [
        "--ros-args",
        "-r",
        "__node:=cam",
        "-r",
        "__ns:=/cam0",
        "-r",
        "image_raw:=/cam0/image",
        "-r",
        "~/get_info:=info",
    ]
    assert spec.ros_args(params_file) == [*expected_head, "--params-file", str(params_file)]
    # Without a file: -p with the same quoting, so '0123' stays a string.
    assert spec.ros_args() == [*expected_head, "-p", 'uri:="0123"', "-p", "loop:=false"]
    command = spec.command(params_file, python="/py")
    assert command[:4] == ["/py", "-m", "edge_vision.nodes.video_source", "--flag"]
    assert command[4:] == spec.ros_args(params_file)
    root = parse_pipeline({"nodes": [node()]}).nodes[0]
    assert root.ros_args()[:5] == ["--ros-args", "-r", "__node:=cam", "-r", "__ns:=/"]
    assert root.write_params_file(tmp_path) is None


TRICKY: dict[str, Any] = {
    "looks_int": "0123",
    "looks_float": "1e3",
    "looks_bool": "on",
    "empty": "",
    "quote": 'it\'s "quoted"\nand: two lines',
    "unicode": "caméra ✓",
    "odd_chars": "a\u2028b\x85c\x7fd\ufeff\te",
    "flag": True,
    "count": -(2**63),
    "ratio": 1e-7,
    "whole_float": 2.0,
    "inf": math.inf,
    "names": ["1", "true", "a b"],
    "ints": [1, 2, 3],
    "floats": [1, 2.5],
    "bools": [True, False],
}


def test_params_file_keeps_types(tmp_path: Path) -> None:
    (spec,) = parse_pipeline({"namespace": "/a/b", "nodes": [node(parameters=TRICKY)]}).nodes
    assert spec.parameters["floats"] == [1.0, 2.5]  # int/float mix promoted to float
    doc = yaml.safe_load(spec.params_yaml())
    params = doc["/a/b/cam"]["ros__parameters"]
    assert params == spec.parameters
    assert {k: type(v) for k, v in params.items()} == {
        k: type(v) for k, v in spec.parameters.items()
    }
    assert format_param_value(math.nan) == ".nan" and format_param_value(-math.inf) == "-.inf"


@pytest.mark.ros
def test_rcl_reads_params_file_and_p_args_with_types(tmp_path: Path) -> None:
    """The real rcl parser, not PyYAML, decides types on the ROS side: check it agrees."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.node import Node

    (spec,) = parse_pipeline({"namespace": "t", "nodes": [node(parameters=TRICKY)]}).nodes
    params_file = spec.write_params_file(tmp_path)
    context = rclpy.Context()
    rclpy.init(args=[], context=context)
    try:
        for args in (spec.ros_args(params_file), spec.ros_args()):
            ros_node = Node(
                "placeholder",
                context=context,
                cli_args=["--user-arg", *args],
                use_global_arguments=False,
                automatically_declare_parameters_from_overrides=True,
                start_parameter_services=False,
            )
            try:
                assert ros_node.get_fully_qualified_name() == "/t/cam"
                got = {k: ros_node.get_parameter(k).value for k in spec.parameters}
                assert got == spec.parameters
                assert {k: type(v) for k, v in got.items()} == {
                    k: type(v) for k, v in spec.parameters.items()
                }
            finally:
                ros_node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_overrides() -> None:
    data = {
        "nodes": [
            node(parameters={"fps": 1.0}),
            node(namespace="cam1"),
            node(name="other"),
        ]
    }
    pipeline = parse_pipeline(data)
    out = apply_overrides(
        pipeline,
        [
            "/cam.fps=10.0",
            "/cam.loop=false",
            "/cam1/cam.uri='123'",
            "other.roi.x=4",
            "other.names=[a, b]",
            "other.raw=not: yaml: [",
        ],
    )
    assert out.nodes[0].parameters == {"fps": 10.0, "loop": False}
    assert out.nodes[1].parameters == {"uri": "123"}
    assert out.nodes[2].parameters == {"roi.x": 4, "names": ["a", "b"], "raw": "not: yaml: ["}
    assert pipeline.nodes[0].parameters == {"fps": 1.0}  # the original is not modified
    with pytest.raises(PipelineError, match="ambiguous"):
        apply_overrides(pipeline, ["cam.fps=1.0"])
    with pytest.raises(PipelineError, match="no node 'nope'"):
        apply_overrides(pipeline, ["nope.fps=1.0"])
    with pytest.raises(PipelineError, match=r"NODE\.PARAM=VALUE"):
        apply_overrides(pipeline, ["other=3"])
    with pytest.raises(PipelineError, match=r"--set other\.fps: null"):
        apply_overrides(pipeline, ["other.fps="])


def test_cli_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path / "p.yaml",
        "nodes:\n  - {name: src, executable: video_source, parameters: {uri: a.mp4}}\n",
    )
    code = cli_main(["launch", str(path), "--dry-run", "--no-respawn", "--set", "src.fps=3.0"])
    out = capsys.readouterr().out
    assert code == 0
    assert "respawn=False" in out
    assert "-m edge_vision.nodes.video_source --ros-args -r __node:=src -r __ns:=/" in out
    assert 'uri: "a.mp4"' in out and "fps: 3.0" in out
    assert cli_main(["launch", str(tmp_path / "missing.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_every_node_executable_has_a_console_script() -> None:
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for executable, module in NODE_EXECUTABLES.items():
        name = "edge-vision-" + executable.replace("_", "-")
        assert scripts.get(name) == f"{module}:main", name
