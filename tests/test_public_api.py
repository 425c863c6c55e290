"""The public API: sorted __all__ lists whose names all resolve, and the Pyro4 module names."""

from __future__ import annotations

import importlib

import pytest

import pyroplug
import pyroplug.plugin


@pytest.mark.parametrize("module", [pyroplug, pyroplug.plugin], ids=lambda m: m.__name__)
def test_all_is_sorted_and_resolves(module: object) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    assert names == sorted(names)
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(module, name) is not None, name


def test_pyro4_names_exist() -> None:
    for name in ("Daemon", "Proxy", "URI", "expose", "oneway", "behavior", "callback", "batch", "asyncproxy",
                 "current_context", "locateNS", "resolve", "Future", "config", "errors", "constants"):
        assert hasattr(pyroplug, name), name
    for module in ("core", "naming", "naming_storage", "socketutil", "util", "message", "futures", "errors", "constants"):
        assert importlib.import_module(f"pyroplug.{module}") is getattr(pyroplug, module)
    assert pyroplug.core.Proxy is pyroplug.Proxy
    assert pyroplug.constants.VERSION == "4.82"
    assert pyroplug.errors.NamingError.__mro__[1] is pyroplug.errors.PyroError
