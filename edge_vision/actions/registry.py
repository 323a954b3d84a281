"""Discovery of action types: built-ins, entry points, then plugin directories.

Sources, in order (the first registration of a ``type_name`` wins):

1. the built-ins (``edge_vision.actions.builtin``);
2. Python entry points in the group ``edge_vision.actions`` (``name = "module:Class"``);
   the built-ins are registered there too, which is not a clash (same class);
3. every ``*.py`` file (not starting with ``_``) in each plugin directory, in name order;
   each ``Action`` subclass *defined in* the file with a non-empty ``type_name`` is
   registered.

Problems (import errors, name clashes, objects that are not Action subclasses) are returned
as messages rather than raised, so one broken plugin does not stop the others.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from edge_vision.actions.base import Action

__all__ = ["ENTRY_POINT_GROUP", "discover_action_types", "load_plugin_file"]

ENTRY_POINT_GROUP = "edge_vision.actions"


def _origin(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _register(types: dict[str, type[Action]], errors: list[str], cls: object, source: str) -> None:
    if not (inspect.isclass(cls) and issubclass(cls, Action)):
        errors.append(f"{source}: {cls!r} is not an Action subclass")
        return
    name = cls.type_name
    if not name:
        errors.append(f"{source}: {_origin(cls)} has no type_name")
        return
    present = types.get(name)
    if present is None:
        types[name] = cls
    elif present is not cls:
        errors.append(
            f"{source}: action type {name!r} of {_origin(cls)} clashes with "
            f"{_origin(present)}, which stays registered"
        )


def _short_error(exc: BaseException) -> str:
    # The last frame in the plugin tells the user where; the whole traceback would be noise.
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def load_plugin_file(path: str | Path) -> ModuleType:
    """Import one plugin file under a module name unique to its path (so two plugin dirs
    may both have ``count.py``). Raises whatever the import raises."""
    path = Path(path).resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"edge_vision_plugin_{digest}_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    # In sys.modules while executing, so typing.get_type_hints (run for each Action subclass
    # as it is defined) and dataclasses can find the module's globals.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def discover_action_types(
    plugin_dirs: Sequence[str | Path] = (),
) -> tuple[dict[str, type[Action]], list[str]]:
    """All action types by ``type_name``, and the problems met while looking for them."""
    from edge_vision.actions.builtin import BUILTIN_ACTIONS

    types: dict[str, type[Action]] = {}
    errors: list[str] = []
    for cls in BUILTIN_ACTIONS:
        _register(types, errors, cls, "built-in")

    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        source = f"entry point {ep.name} = {ep.value}"
        try:
            cls = ep.load()
        except Exception as exc:
            errors.append(f"{source}: {_short_error(exc)}")
            continue
        if inspect.isclass(cls) and issubclass(cls, Action) and cls.type_name != ep.name:
            errors.append(
                f"{source}: the class's type_name is {cls.type_name!r}; registered under that"
            )
        _register(types, errors, cls, source)

    for directory in plugin_dirs:
        directory = Path(directory)
        if not directory.is_dir():
            errors.append(f"plugin directory {directory}: not a directory")
            continue
        for path in sorted(directory.glob("*.py")):
            if path.name.startswith("_"):
                continue
            try:
                module = load_plugin_file(path)
            except (Exception, SystemExit) as exc:  # a plugin calling sys.exit() too
                errors.append(f"plugin {path}: {_short_error(exc)}")
                continue
            found = [
                obj
                for obj in vars(module).values()
                if inspect.isclass(obj)
                and issubclass(obj, Action)
                and obj.__module__ == module.__name__
                and obj.type_name
            ]
            if not found:
                errors.append(f"plugin {path}: defines no Action subclass with a type_name")
            for cls in found:
                _register(types, errors, cls, f"plugin {path}")
    return types, errors
