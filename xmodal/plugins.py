"""The plugin manager: loads plugins from the `xmodal` entry-point group into a `Registry`.

Built-in plugins (the `xmodal_plugins` package, in plugins/) are entry points like any other.
`XMODAL_LOAD_PLUGINS` (comma-separated entry-point names) limits which ones load; set it to an
empty string to load none.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable
from typing import Any

import attrs
import pluggy

from xmodal import hookspecs
from xmodal.components import DatasetSpec, EncoderSpec, LossSpec, MappingSpec, MetricSpec
from xmodal.errors import XmodalError

ENTRY_POINT_GROUP = "xmodal"
KINDS: dict[str, tuple[str, type]] = {
    "datasets": ("register_datasets", DatasetSpec),
    "mappings": ("register_mappings", MappingSpec),
    "losses": ("register_losses", LossSpec),
    "metrics": ("register_metrics", MetricSpec),
    "encoders": ("register_encoders", EncoderSpec),
}


class PluginError(XmodalError):
    """A plugin failed to load or registered something invalid."""


@attrs.define
class Registry:
    """Everything the loaded plugins registered, by kind and name, and who registered it."""

    datasets: dict[str, DatasetSpec] = attrs.Factory(dict)
    mappings: dict[str, MappingSpec] = attrs.Factory(dict)
    losses: dict[str, LossSpec] = attrs.Factory(dict)
    metrics: dict[str, MetricSpec] = attrs.Factory(dict)
    encoders: dict[str, EncoderSpec] = attrs.Factory(dict)
    owners: dict[tuple[str, str], str] = attrs.Factory(dict)
    plugins: list[str] = attrs.Factory(list)

    def of(self, kind: str) -> dict[str, Any]:
        return getattr(self, kind)

    def registered_by(self, plugin: str) -> dict[str, list[str]]:
        return {
            kind: sorted(
                name for (k, name), owner in self.owners.items() if k == kind and owner == plugin
            )
            for kind in KINDS
        }


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("xmodal")
    pm.add_hookspecs(hookspecs)
    return pm


def _allowed_names() -> set[str] | None:
    raw = os.environ.get("XMODAL_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def load_manager(extra: list[tuple[str, object]] | None = None) -> pluggy.PluginManager:
    """A plugin manager with the entry-point plugins (limited by XMODAL_LOAD_PLUGINS) and `extra`."""
    pm = _new_manager()
    allowed = _allowed_names()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allowed is not None and ep.name not in allowed:
            continue
        if pm.has_plugin(ep.name):
            continue
        try:
            module = ep.load()
        except Exception as exc:
            raise PluginError(
                f"plugin {ep.name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        pm.register(module, name=ep.name)
    for name, plugin in extra or []:
        pm.register(plugin, name=name)
    return pm


def build_registry(pm: pluggy.PluginManager) -> Registry:
    """Call every plugin's register_* hooks and collect what they register, checking clashes."""
    registry = Registry(plugins=[name for name, _ in pm.list_name_plugin()])
    for kind, (hook_name, spec_type) in KINDS.items():
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            register = _registrar(registry, kind, spec_type, impl.plugin_name)
            try:
                impl.function(register=register)
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"plugin {impl.plugin_name!r} failed in {hook_name}: {type(exc).__name__}: {exc}"
                ) from exc
    return registry


def _registrar(
    registry: Registry, kind: str, spec_type: type, plugin: str
) -> Callable[[Any], None]:
    def register(spec: Any) -> None:
        if not isinstance(spec, spec_type):
            raise PluginError(
                f"plugin {plugin!r} registered {spec!r} with register_{kind}; "
                f"expected a {spec_type.__name__}"
            )
        table = registry.of(kind)
        if spec.name in table:
            other = registry.owners[(kind, spec.name)]
            raise PluginError(
                f"plugins {other!r} and {plugin!r} both register a {kind[:-1]} named "
                f"{spec.name!r}; uninstall one or limit loading with XMODAL_LOAD_PLUGINS"
            )
        table[spec.name] = spec
        registry.owners[(kind, spec.name)] = plugin

    return register


_manager: pluggy.PluginManager | None = None
_registry: Registry | None = None


def get_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loaded on first use."""
    global _manager
    if _manager is None:
        _manager = load_manager()
    return _manager


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _registry
    if _registry is None:
        _registry = build_registry(get_manager())
    return _registry


def reset(manager: pluggy.PluginManager | None = None) -> None:
    """Forget the loaded plugins, or install `manager` (tests that add plugins use this)."""
    global _manager, _registry
    _manager, _registry = manager, None
