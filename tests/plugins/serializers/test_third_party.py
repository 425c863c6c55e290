"""The example third-party plugin package (examples/plugins/pyroplug-cbor), loaded through its entry point."""

from __future__ import annotations

import types
from typing import Any, ClassVar

import pytest

from pyroplug.core.config import Config, accepted_set
from pyroplug.core.errors import PluginError
from pyroplug.core.hookspec import hookimpl
from pyroplug.core.plugins import make_plugin_manager, register_module
from pyroplug.core.registry import Registry
from pyroplug.core.serializer import Serializer
from pyroplug.core.uri import URI
from pyroplug.testing.serializers import SerializerConformance

pyroplug_cbor = pytest.importorskip("pyroplug_cbor", reason="pip install -e examples/plugins/pyroplug-cbor")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("PYRO_PLUGINS_DISABLE", raising=False)
    monkeypatch.delenv("PYRO_PLUGINS_AUTOLOAD", raising=False)
    return monkeypatch


def _with_entry_points() -> Registry:
    return Registry.build(make_plugin_manager(disabled="", autoload=True))


def test_loaded_through_its_entry_point(clean_env: pytest.MonkeyPatch) -> None:
    pm = make_plugin_manager()
    reg = Registry.build(pm)
    cls = reg.serializer("cbor")
    assert cls.__module__ == "pyroplug_cbor" and cls.__name__ == "CborSerializer"
    assert reg.serializer_by_id(40) is cls
    assert pm.get_plugin("cbor") is pyroplug_cbor  # registered under the entry point's name
    dists = {dist.project_name for _plugin, dist in pm.list_plugin_distinfo()}
    assert "pyroplug-cbor" in dists
    assert "serializers: cbor (id 40)" in reg.provided_by(pyroplug_cbor)
    assert reg.serializer("serpent").serializer_id == 1  # builtins still there


def test_selected_through_config(clean_env: pytest.MonkeyPatch) -> None:
    cfg = Config.from_env({"PYRO_SERIALIZER": "cbor", "PYRO_SERIALIZERS_ACCEPTED": "serpent, cbor"})
    reg = _with_entry_points()
    assert cfg.SERIALIZER == "cbor" and accepted_set(cfg.SERIALIZERS_ACCEPTED) == {"serpent", "cbor"}
    ser = reg.serializer(cfg.SERIALIZER)(cfg)
    assert ser.serializer_id == 40
    assert {reg.serializer(n).serializer_id for n in accepted_set(cfg.SERIALIZERS_ACCEPTED)} == {1, 40}
    assert ser.loads(ser.dumps([URI("PYRO:obj@localhost:9090")])) == [URI("PYRO:obj@localhost:9090")]


def test_disabled_by_name(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PYRO_PLUGINS_DISABLE", "cbor")
    reg = Registry.build(make_plugin_manager())
    assert "cbor" not in reg.serializers and 40 not in reg.serializers_by_id
    with pytest.raises(PluginError, match="unknown serializer 'cbor'; available: .*serpent"):
        reg.serializer("cbor")
    assert "cbor" not in Registry.build(make_plugin_manager(disabled="cbor", autoload=True)).serializers


def test_autoload_off_skips_entry_points(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PYRO_PLUGINS_AUTOLOAD", "0")
    reg = Registry.build(make_plugin_manager())
    assert "cbor" not in reg.serializers
    assert "serpent" in reg.serializers
    with pytest.raises(PluginError, match="no serializer with id 40"):
        reg.serializer_by_id(40)


def _impostor(name: str, sid: int) -> types.SimpleNamespace:
    class Impostor(Serializer):
        """A second plugin's serializer reusing a key."""

        serializer_id: ClassVar[int] = sid

        def dumps(self, data: Any) -> bytes:
            return b""

        def loads(self, data: Any) -> Any:
            return None

    Impostor.name = name  # type: ignore[misc]

    @hookimpl
    def pyroplug_serializers() -> tuple[type[Serializer], ...]:
        return (Impostor,)

    return types.SimpleNamespace(pyroplug_serializers=pyroplug_serializers)


@pytest.mark.parametrize("name, sid, key", [("cbor", 41, "name 'cbor'"), ("cbor2", 40, "serializer_id 40")])
def test_duplicate_key_names_both_classes(clean_env: pytest.MonkeyPatch, name: str, sid: int, key: str) -> None:
    pm = make_plugin_manager(disabled="", autoload=True)
    register_module(pm, _impostor(name, sid), "impostor")
    with pytest.raises(PluginError, match=key) as info:
        Registry.build(pm)
    assert "pyroplug_cbor.CborSerializer" in str(info.value)
    assert "Impostor" in str(info.value)


class TestCborConformance(SerializerConformance):
    """The third-party serializer passes the same conformance suite as the builtins."""

    @pytest.fixture
    def serializer_class(self) -> type[Serializer]:
        return _with_entry_points().serializer("cbor")
