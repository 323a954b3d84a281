"""``edge-vision models``: list, inspect, pull and import models (see edge_vision.models.zoo).

User mistakes (unknown name, a model that does not fit its description) exit with code 2 and a
one-line error; a failed fetch (no network, bad checksum) exits with 1. No tracebacks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]

EXIT_FAILURE = 1
EXIT_USAGE = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list, inspect, pull and import models",
        description="The model zoo: list, inspect, pull and import models.",
    )
    parser.set_defaults(func=lambda _args: _usage(parser))
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    # Each action takes --cache so that it works in any position after the action name.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="model cache directory (default: $EDGE_VISION_CACHE or ~/.cache/edge_vision/models)",
    )

    p = actions.add_parser("list", parents=[common], help="table of known models")
    p.set_defaults(func=_list)

    p = actions.add_parser("info", parents=[common], help="everything about one model, as YAML")
    p.add_argument("name")
    p.add_argument("--labels", action="store_true", help="print all labels too")
    p.set_defaults(func=_info)

    p = actions.add_parser("pull", parents=[common], help="fetch, convert and verify models")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=_pull)

    p = actions.add_parser(
        "import",
        parents=[common],
        help="validate an ONNX model and add it to the cache under a name",
        description=(
            "Validate an ONNX model against its description (input layout and size, labels vs "
            "outputs, decoder) and copy it with its labels into the cache, so that detector and "
            "classifier nodes load it by --name. Preprocessing: (pixel * scale - mean) / std, "
            "pixels 0..255 in --color-order."
        ),
    )
    p.add_argument("file", type=Path, metavar="FILE.onnx")
    p.add_argument("--name", required=True)
    p.add_argument("--task", required=True, choices=("detection", "classification"))
    p.add_argument("--labels", required=True, type=Path, help="text file, one label per line")
    p.add_argument(
        "--decoder",
        help="detection: gfl, centernet, yolo, ssd; classification: softmax (default), "
        "sigmoid, probabilities",
    )
    p.add_argument("--input-size", type=_size, metavar="WxH", help="default: from the model")
    p.add_argument("--mean", type=_triple, default=(0.0, 0.0, 0.0), metavar="A,B,C")
    p.add_argument("--std", type=_triple, default=(1.0, 1.0, 1.0), metavar="A,B,C")
    p.add_argument("--scale", type=_fraction, default=1.0, help="e.g. 1/255 or 0.00392")
    p.add_argument("--color-order", default="RGB", choices=("RGB", "BGR"))
    p.add_argument("--layout", default="NCHW", choices=("NCHW", "NHWC"))
    p.add_argument("--letterbox", action="store_true", help="keep aspect ratio and pad")
    p.add_argument("--input-name")
    p.add_argument("--output-names", type=_names, metavar="A,B")
    p.add_argument("--score-threshold", type=float, default=0.35)
    p.add_argument("--iou-threshold", type=float, default=0.6)
    p.add_argument("--strides", type=_ints, metavar="8,16,32", help="gfl: output strides")
    p.add_argument("--reg-max", type=int, help="gfl: bins - 1 (default: from the outputs)")
    p.add_argument("--box-format", choices=("xyxy", "yxyx"), help="ssd: corner order")
    p.add_argument(
        "--pixel-boxes", action="store_true", help="ssd: boxes in input pixels, not 0..1"
    )
    p.add_argument("--licence", default="unknown")
    p.add_argument("--description", default="")
    p.add_argument("--force", action="store_true", help="replace an import of the same name")
    p.set_defaults(func=_import)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


# -- argument types (argparse turns their ValueError into a one-line usage error) -------------


def _size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 416x416")
    try:
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 416x416") from None


def _fraction(text: str) -> float:
    num, sep, den = text.partition("/")
    try:
        return float(num) / float(den) if sep else float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or fraction") from None


def _triple(text: str) -> tuple[float, float, float]:
    parts = text.split(",")
    if len(parts) == 1:
        parts = parts * 3
    try:
        values = tuple(_fraction(p) for p in parts)
    except argparse.ArgumentTypeError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not one or three comma-separated numbers")
    return values  # type: ignore[return-value]


def _ints(text: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not comma-separated integers") from None


def _names(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


# -- actions -----------------------------------------------------------------------------------


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"edge-vision models: error: {message}", file=sys.stderr)
    return code


def _list(args: argparse.Namespace) -> int:
    import warnings

    from edge_vision.models import zoo

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        entries = zoo.list_models(args.cache)
    rows = [("NAME", "TASK", "INPUT", "SOURCE", "LICENCE", "PULLED")]
    for e in entries:
        try:
            pulled = "yes" if zoo.is_pulled(e.name, args.cache) else "no"
        except Exception:  # a half-written cache must not break the listing
            pulled = "no"
        w, h = e.input_size
        rows.append((e.name, e.task, f"{w}x{h}", e.source, e.licence, pulled))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(n) for c, n in zip(r, widths, strict=True)).rstrip())
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return 0


def _info(args: argparse.Namespace) -> int:
    import yaml

    from edge_vision.models import zoo
    from edge_vision.models.errors import ModelLoadError

    try:
        entry = zoo.get(args.name, args.cache)
        doc: dict[str, Any] = entry.to_dict()
        doc["pulled"] = zoo.is_pulled(entry.name, args.cache)
        if not entry.imported:
            doc["cache"] = str(zoo.entry_dir(entry.name, args.cache))
        if args.labels:
            doc["labels"]["all"] = list(zoo.entry_labels(entry, args.cache))
    except ModelLoadError as exc:
        return _fail(str(exc))
    print(yaml.dump(doc, Dumper=_dumper(), sort_keys=False, width=100), end="")
    return 0


def _dumper() -> type:
    import yaml

    class Dumper(yaml.SafeDumper):
        """Block style, except for lists of plain values ([416, 416]): easier to read."""

        def represent_list(self, data: list[Any]) -> Any:
            flow = all(isinstance(v, (int, float, bool)) for v in data)
            return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)

    Dumper.add_representer(list, Dumper.represent_list)
    return Dumper


def _pull(args: argparse.Namespace) -> int:
    from edge_vision.models import zoo
    from edge_vision.models.errors import ModelLoadError
    from edge_vision.models.human_models import ModelFetchError

    names = list(dict.fromkeys(args.names))
    try:
        for name in names:
            zoo.get(name, args.cache)  # all names checked before the first slow fetch
    except ModelLoadError as exc:
        return _fail(str(exc))
    for name in names:
        try:
            path = zoo.pull(name, args.cache)
        except ModelFetchError as exc:
            return _fail(f"cannot pull {name}: {exc}", EXIT_FAILURE)
        except ModelLoadError as exc:  # e.g. a broken import manifest
            return _fail(str(exc))
        print(f"{name}: {path}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from edge_vision.models import zoo

    params: dict[str, Any] = {}
    if args.strides:
        params["strides"] = args.strides
    if args.reg_max is not None:
        params["reg_max"] = args.reg_max
    if args.box_format:
        params["box_format"] = args.box_format
    if args.pixel_boxes:
        params["normalized"] = False
    try:
        entry = zoo.import_model(
            args.file,
            args.name,
            args.task,
            args.labels,
            decoder=args.decoder,
            input_size=args.input_size,
            mean=args.mean,
            std=args.std,
            scale=args.scale,
            color_order=args.color_order,
            layout=args.layout,
            input_name=args.input_name,
            output_names=args.output_names,
            letterbox=args.letterbox,
            score_threshold=args.score_threshold,
            iou_threshold=args.iou_threshold,
            decoder_params=params,
            licence=args.licence,
            description=args.description,
            cache_dir=args.cache,
            overwrite=args.force,
        )
    except zoo.ModelImportError as exc:
        return _fail(str(exc))
    w, h = entry.input_size
    print(
        f"imported {entry.name}: {entry.task}, {w}x{h}, {entry.num_labels} labels, decoder "
        f"{entry.decoder} -> {entry.manifest}"
    )
    return 0
