"""Loads plugin folders and resolves refs to plugin classes, and to nothing else.

Each folder becomes a private package (``_cme_plugins.<kind>_<n>``) whose modules are
the folder's ``*.py`` files, so plugins never shadow standard modules and nothing is
added to ``sys.path``. A ref ``module:Class`` (or ``module.Class``) resolves only to a
subclass of the contract that was found in a loaded plugin module.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from chalicelib.domain.errors import UnknownPlugin
from chalicelib.plugins.contract import Attack, Planner
from chalicelib.plugins.validation import check_schema

log = logging.getLogger(__name__)

PRIVATE_ROOT = "_cme_plugins"
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

PluginT = TypeVar("PluginT", Attack, Planner)


@dataclass(frozen=True)
class LoadError:
    """A plugin file or class that could not be loaded, and why."""

    path: str
    reason: str


@dataclass
class PluginSet(Generic[PluginT]):
    """The plugins of one kind (attacks or planners) found in some folders."""

    kind: str
    base: type[PluginT]
    classes: dict[str, type[PluginT]] = field(default_factory=dict)
    errors: list[LoadError] = field(default_factory=list)

    @property
    def noun(self) -> str:
        """``attack`` or ``planner``: what one plugin of this set is called in messages."""
        return self.kind.removesuffix("s")

    @property
    def refs(self) -> list[str]:
        return sorted(self.classes)

    def resolve(self, ref: object) -> type[PluginT]:
        """The class a ref names; UnknownPlugin for anything else."""
        if not isinstance(ref, str) or not ref:
            raise UnknownPlugin(self.noun, ref, self.classes, "ref must be a non-empty string")
        found = self.classes.get(_canonical(ref))
        if found is None:
            raise UnknownPlugin(self.noun, ref, self.classes)
        return found

    def warm_up(self) -> None:
        """Call every plugin's ``warm_up`` (attacks import their drivers); a failure is
        logged and the rest go on (the attack itself will report it when it runs)."""
        for ref in self.refs:
            warm = getattr(self.classes[ref], "warm_up", None)
            if warm is None:
                continue
            try:
                warm()
            except Exception:
                log.warning("could not warm up %s", ref, exc_info=True)

    def catalogue(self) -> list[dict[str, Any]]:
        """``{ref, schema, example}`` of every plugin, for the API."""
        entries = []
        for ref in self.refs:
            cls = self.classes[ref]
            described = cls.to_dict() or {}
            entries.append(
                {
                    "ref": ref,
                    "schema": described.get("schema", cls.schema),
                    "example": described.get("example", cls.example),
                }
            )
        return entries


def _canonical(ref: str) -> str:
    """``module.Class`` and ``module:Class`` name the same plugin."""
    if ":" in ref:
        return ref
    module, dot, name = ref.rpartition(".")
    return f"{module}:{name}" if dot else ref


def load_plugins(kind: str, base: type[PluginT], folders: Iterable[Path]) -> PluginSet[PluginT]:
    """Import every ``*.py`` of each folder and collect the subclasses of ``base``.

    A folder listed twice is loaded once. A file that fails to import, or a class whose
    schema is not valid JSON Schema, is recorded in ``errors`` and logged; the other
    plugins still load. When two folders define the same ref the first one wins.
    """
    plugins: PluginSet[PluginT] = PluginSet(kind=kind, base=base)
    seen: set[Path] = set()
    _ensure_package(PRIVATE_ROOT, [])
    for folder in folders:
        resolved = Path(folder).resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        package = f"{PRIVATE_ROOT}.{kind}_{len(seen) - 1}_{abs(hash(str(resolved))):x}"
        _ensure_package(package, [str(resolved)])
        for path in sorted(resolved.glob("*.py")):
            if path.stem.startswith("_") or path.stem.endswith("_test"):
                continue
            if not _MODULE_NAME.match(path.stem):
                plugins.errors.append(LoadError(str(path), "file name is not a module name"))
                continue
            _collect(plugins, package, path)
    for error in plugins.errors:
        log.error("plugin not loaded", extra={"path": error.path, "reason": error.reason})
    return plugins


def _ensure_package(name: str, path: list[str]) -> None:
    if name in sys.modules:
        return
    package = types.ModuleType(name)
    package.__path__ = path
    package.__package__ = name
    sys.modules[name] = package


def _collect(plugins: PluginSet[PluginT], package: str, path: Path) -> None:
    module_name = f"{package}.{path.stem}"
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # a broken plugin must not take the others down
        sys.modules.pop(module_name, None)
        plugins.errors.append(LoadError(str(path), f"{type(error).__name__}: {error}"))
        return
    for attribute in vars(module).values():
        if not _is_plugin_class(attribute, plugins.base):
            continue
        ref = f"{path.stem}:{attribute.__name__}"
        if ref in plugins.classes:
            continue
        problem = check_schema(attribute.schema)
        if problem:
            plugins.errors.append(LoadError(str(path), f"{ref}: {problem}"))
            continue
        plugins.classes[ref] = attribute


def _is_plugin_class(candidate: Any, base: type) -> bool:
    """A subclass of the contract defined in a loaded plugin module (never a base class)."""
    return (
        isinstance(candidate, type)
        and issubclass(candidate, base)
        and candidate is not base
        and candidate.__module__.startswith(f"{PRIVATE_ROOT}.")
    )
