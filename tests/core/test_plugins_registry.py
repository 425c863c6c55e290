"""The plugin manager and the frozen Registry, with fake plugins registered the way builtins are."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pluggy
import pytest

from pyroplug.core import hookspec, plugins, registry
from pyroplug.core.errors import PluginError, PyroError
from pyroplug.core.hookspec import hookimpl
from pyroplug.core.plugins import BUILTIN_PLUGINS, make_plugin_manager
from pyroplug.core.registry import Registry
from pyroplug.core.serializer import Serializer
from pyroplug.core.servertype import ServerType
from pyroplug.core.transport import Transport

ROOT = Path(__file__).resolve().parents[2]


# ---- fake plugin classes -------------------------------------------------------------------
class FakeSerializer(Serializer):
    name = "fake"
    serializer_id = 200

    def dumps(self, data):
        return json.dumps(data).encode()

    def loads(self, data):
        return json.loads(bytes(data))


class OtherFakeSerializer(FakeSerializer):
    name = "otherfake"
    serializer_id = 201


class ClashingNameSerializer(FakeSerializer):
    serializer_id = 202  # name 'fake' again


class ClashingIdSerializer(FakeSerializer):
    name = "clash"  # id 200 again


class NoIdSerializer(FakeSerializer):
    name = "noid"
    serializer_id = None  # type: ignore[assignment]


class NoNameSerializer(Serializer):
    serializer_id = 203

    def dumps(self, data):
        return b""

    def loads(self, data):
        return None


class FakeServer(ServerType):
    name = "fakeserver"


class FakeTransport(Transport):
    location_kind = "fk"


class ClashingTransport(Transport):
    location_kind = "fk"


class NoKindTransport(Transport):
    pass


class Provider:
    """A plugin object that provides the given classes through the three hooks."""

    def __init__(self, serializers=(), servers=(), transports=()):
        self.serializers, self.servers, self.transports = serializers, servers, transports

    @hookimpl
    def pyroplug_serializers(self):
        return self.serializers

    @hookimpl
    def pyroplug_server_types(self):
        return self.servers

    @hookimpl
    def pyroplug_transports(self):
        return self.transports


def registered(pm: pluggy.PluginManager) -> list[str]:
    """Names of the registered plugins (pluggy lists blocked names with a None plugin)."""
    return [name for name, plugin in pm.list_name_plugin() if plugin is not None]


def empty_manager() -> pluggy.PluginManager:
    return make_plugin_manager(disabled="", builtins=(), autoload=False)


def build(*providers: object) -> Registry:
    pm = empty_manager()
    for i, provider in enumerate(providers):
        pm.register(provider, name=f"provider{i}")
    return Registry.build(pm)


def module_plugin(monkeypatch, dotted: str, **hooks) -> types.ModuleType:
    """A fake plugin module importable under ``dotted``; ``hooks`` are hook name -> function."""
    mod = types.ModuleType(dotted)
    for hookname, func in hooks.items():
        func.__name__ = hookname
        setattr(mod, hookname, hookimpl(func))
    monkeypatch.setitem(sys.modules, dotted, mod)
    return mod


@pytest.fixture
def restore_global_manager():
    """Tests that swap the process-wide manager put the previous one back."""
    saved = plugins._manager
    yield
    plugins.reset_plugins(saved)


# ---- registry building ---------------------------------------------------------------------
def test_empty_manager_has_nothing():
    pm = empty_manager()
    assert registered(pm) == []
    reg = Registry.build(pm)
    assert (dict(reg.serializers), dict(reg.server_types), dict(reg.transports)) == ({}, {}, {})


def test_registry_indexes_by_declared_keys():
    reg = build(
        Provider(serializers=[FakeSerializer, OtherFakeSerializer], servers=[FakeServer], transports=[FakeTransport])
    )
    assert reg.serializer("fake") is FakeSerializer
    assert reg.serializer_by_id(201) is OtherFakeSerializer
    assert reg.server_type("fakeserver") is FakeServer
    assert reg.transport_for("fk") is FakeTransport
    assert sorted(reg.serializers) == ["fake", "otherfake"]
    assert sorted(reg.serializers_by_id) == [200, 201]


def test_same_class_from_two_plugins_is_not_a_duplicate():
    reg = build(Provider(serializers=[FakeSerializer]), Provider(serializers=[FakeSerializer]))
    assert reg.serializer("fake") is FakeSerializer


@pytest.mark.parametrize(
    ("first", "second", "what"),
    [
        (Provider(serializers=[FakeSerializer]), Provider(serializers=[ClashingNameSerializer]), "name 'fake'"),
        (Provider(serializers=[FakeSerializer]), Provider(serializers=[ClashingIdSerializer]), "serializer_id 200"),
        (Provider(transports=[FakeTransport]), Provider(transports=[ClashingTransport]), "location_kind 'fk'"),
    ],
)
def test_duplicate_keys_name_both_classes(first, second, what):
    with pytest.raises(PluginError, match="duplicate") as info:
        build(first, second)
    message = str(info.value)
    assert what in message
    first_cls = (first.serializers or first.transports)[0]
    second_cls = (second.serializers or second.transports)[0]
    assert f"{__name__}.{first_cls.__qualname__}" in message
    assert f"{__name__}.{second_cls.__qualname__}" in message


def test_duplicate_server_type_names_both_classes():
    class Another(ServerType):
        name = "fakeserver"

    with pytest.raises(PluginError) as info:
        build(Provider(servers=[FakeServer]), Provider(servers=[Another]))
    assert "FakeServer" in str(info.value) and "Another" in str(info.value)


@pytest.mark.parametrize(
    ("provider", "missing"),
    [
        (Provider(serializers=[NoNameSerializer]), "'name'"),
        (Provider(serializers=[NoIdSerializer]), "'serializer_id'"),
        (Provider(transports=[NoKindTransport]), "'location_kind'"),
    ],
)
def test_missing_key_raises(provider, missing):
    with pytest.raises(PluginError, match="does not set " + missing):
        build(provider)


@pytest.mark.parametrize("bad_id", [0, -1, 65536, "7", 2.0, True])
def test_invalid_serializer_id(bad_id):
    bad = type("BadId", (FakeSerializer,), {"name": "bad", "serializer_id": bad_id})
    with pytest.raises(PluginError, match="invalid serializer_id"):
        build(Provider(serializers=[bad]))


@pytest.mark.parametrize("returned", [[object], [FakeServer], ["serpent"], [json]])
def test_hooks_must_return_contract_classes(returned):
    with pytest.raises(PluginError, match="not a Serializer subclass"):
        build(Provider(serializers=returned))


def test_failing_hook_is_reported_with_the_plugin_name():
    class Broken:
        @hookimpl
        def pyroplug_transports(self):
            raise ImportError("no such library")

    pm = empty_manager()
    pm.register(Broken(), name="broken-plugin")
    with pytest.raises(PluginError, match="broken-plugin.*pyroplug_transports.*no such library"):
        Registry.build(pm)


def test_hook_returning_none_provides_nothing():
    class Quiet:
        @hookimpl
        def pyroplug_serializers(self):
            return None

    assert dict(build(Quiet()).serializers) == {}


def test_unknown_names_list_what_is_available():
    reg = build(Provider(serializers=[FakeSerializer, OtherFakeSerializer], transports=[FakeTransport]))
    with pytest.raises(PluginError, match=r"unknown serializer 'nope'; available: fake, otherfake$"):
        reg.serializer("nope")
    with pytest.raises(PluginError, match="unknown server type 'thread'; available: none"):
        reg.server_type("thread")
    with pytest.raises(PluginError, match="unknown transport for location kind 'u'; available: fk"):
        reg.transport_for("u")
    with pytest.raises(PluginError, match="no serializer with id 99; available: 200=fake, 201=otherfake"):
        reg.serializer_by_id(99)


@pytest.mark.parametrize("name", ["dill", "msgpack"])
def test_missing_optional_serializer_gives_the_pip_hint(name):
    reg = build(Provider(serializers=[FakeSerializer]))
    with pytest.raises(PluginError) as info:
        reg.serializer(name)
    assert f"pip install pyroplug[{name}]" in str(info.value)
    assert "available: fake" in str(info.value)
    with pytest.raises(PluginError) as info:
        reg.serializer_by_id({"dill": 5, "msgpack": 6}[name])
    assert f"pip install pyroplug[{name}]" in str(info.value)


def test_lookup_errors_are_pyro_errors():
    reg = build()
    for call in (lambda: reg.serializer("x"), lambda: reg.serializer_by_id(1), lambda: reg.transport_for("tcp")):
        with pytest.raises(PyroError):
            call()


def test_registry_is_frozen():
    reg = build(Provider(serializers=[FakeSerializer]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        reg.serializers = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        reg.serializers["evil"] = FakeSerializer  # type: ignore[index]
    with pytest.raises(TypeError):
        reg.serializers_by_id[1] = FakeSerializer  # type: ignore[index]
    with pytest.raises(TypeError):
        reg.transports["tcp"] = FakeTransport  # type: ignore[index]


def test_registry_is_a_snapshot():
    pm = empty_manager()
    pm.register(Provider(serializers=[FakeSerializer]), name="p1")
    reg = Registry.build(pm)
    pm.register(Provider(serializers=[OtherFakeSerializer]), name="p2")
    assert sorted(reg.serializers) == ["fake"]
    assert sorted(Registry.build(pm).serializers) == ["fake", "otherfake"]


def test_provided_by_and_describe_plugins():
    provider = Provider(serializers=[FakeSerializer], transports=[FakeTransport])
    pm = empty_manager()
    pm.register(provider, name="my-plugin")
    pm.register(Provider(), name="idle-plugin")
    reg = Registry.build(pm)
    assert reg.provided_by(provider) == "serializers: fake (id 200); transports: fk"
    lines = plugins.describe_plugins(pm)
    assert lines == [
        "idle-plugin [pyroplug (builtin)]: nothing available",
        "my-plugin [pyroplug (builtin)]: serializers: fake (id 200); transports: fk",
    ]


# ---- the manager: builtins, blocking, entry points, spec checks ------------------------------
def test_builtins_are_registered_under_their_dotted_names(monkeypatch):
    monkeypatch.delenv("PYRO_PLUGINS_DISABLE", raising=False)
    module_plugin(monkeypatch, "fakeplug.alpha", pyroplug_serializers=lambda: [FakeSerializer])
    module_plugin(monkeypatch, "fakeplug.beta", pyroplug_transports=lambda: [FakeTransport])
    pm = make_plugin_manager(builtins=("fakeplug.alpha", "fakeplug.beta"), autoload=False)
    assert registered(pm) == ["fakeplug.alpha", "fakeplug.beta"]
    assert pm.get_plugin("fakeplug.alpha") is sys.modules["fakeplug.alpha"]
    reg = Registry.build(pm)
    assert reg.serializer("fake") is FakeSerializer and reg.transport_for("fk") is FakeTransport


@pytest.mark.parametrize("how", ["env", "argument"])
def test_disable_blocks_a_builtin_by_dotted_name(monkeypatch, how):
    module_plugin(monkeypatch, "fakeplug.alpha", pyroplug_serializers=lambda: [FakeSerializer])
    module_plugin(monkeypatch, "fakeplug.beta", pyroplug_serializers=lambda: [OtherFakeSerializer])
    names = " fakeplug.alpha , some.other.plugin"
    if how == "env":
        monkeypatch.setenv("PYRO_PLUGINS_DISABLE", names)
        pm = make_plugin_manager(builtins=("fakeplug.alpha", "fakeplug.beta"), autoload=False)
    else:
        monkeypatch.delenv("PYRO_PLUGINS_DISABLE", raising=False)
        pm = make_plugin_manager(disabled=names, builtins=("fakeplug.alpha", "fakeplug.beta"), autoload=False)
    assert pm.is_blocked("fakeplug.alpha") and pm.is_blocked("some.other.plugin")
    assert pm.get_plugin("fakeplug.alpha") is None
    reg = Registry.build(pm)
    assert sorted(reg.serializers) == ["otherfake"]
    with pytest.raises(PluginError, match="available: otherfake"):
        reg.serializer("fake")


def test_a_blocked_builtin_is_not_even_imported(monkeypatch):
    monkeypatch.setenv("PYRO_PLUGINS_DISABLE", "no_such_package_xyz.plugin")
    pm = make_plugin_manager(builtins=("no_such_package_xyz.plugin",), autoload=False)
    assert "no_such_package_xyz" not in sys.modules
    assert registered(pm) == []


def test_misspelled_hookimpl_fails_check_pending(monkeypatch):
    module_plugin(monkeypatch, "fakeplug.typo", pyroplug_serializer=lambda: [FakeSerializer])  # no 's'
    with pytest.raises(PluginError, match="pyroplug_serializer") as info:
        make_plugin_manager(disabled="", builtins=("fakeplug.typo",), autoload=False)
    assert isinstance(info.value.__cause__, pluggy.PluginValidationError)
    # and the same through pluggy directly, for a plugin registered afterwards
    pm = empty_manager()
    pm.register(sys.modules["fakeplug.typo"], name="typo")
    with pytest.raises(pluggy.PluginValidationError, match="unknown hook 'pyroplug_serializer'"):
        pm.check_pending()


def test_hookimpl_with_wrong_arguments_is_refused(monkeypatch):
    module_plugin(monkeypatch, "fakeplug.args", pyroplug_transports=lambda config, extra: [])
    with pytest.raises(PluginError, match="fakeplug.args"):
        make_plugin_manager(disabled="", builtins=("fakeplug.args",), autoload=False)


class FakeDistribution:
    """Enough of importlib.metadata.Distribution for pluggy's entry-point loader."""

    def __init__(self, name: str, version: str, entry_points: list) -> None:
        self.metadata = {"name": name}
        self.version = version
        self.entry_points = entry_points


@pytest.fixture
def fake_entry_point(monkeypatch):
    module_plugin(monkeypatch, "fake_dist_plugin", pyroplug_serializers=lambda: [OtherFakeSerializer])
    dist = FakeDistribution(
        "pyroplug-fake",
        "9.9",
        [
            importlib.metadata.EntryPoint("fakeep", "fake_dist_plugin", hookspec.NAME),
            importlib.metadata.EntryPoint("unrelated", "json", "some.other.group"),
        ],
    )
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: [dist])
    monkeypatch.delenv("PYRO_PLUGINS_DISABLE", raising=False)
    monkeypatch.delenv("PYRO_PLUGINS_AUTOLOAD", raising=False)
    return dist


def test_entry_points_are_loaded_by_default(fake_entry_point):
    pm = make_plugin_manager(builtins=())
    assert registered(pm) == ["fakeep"]
    assert Registry.build(pm).serializer("otherfake") is OtherFakeSerializer
    assert plugins.describe_plugins(pm) == ["fakeep [pyroplug-fake 9.9]: serializers: otherfake (id 201)"]


@pytest.mark.parametrize("value", ["0", "no", "false", "off", " OFF "])
def test_autoload_off_by_env(fake_entry_point, monkeypatch, value):
    monkeypatch.setenv("PYRO_PLUGINS_AUTOLOAD", value)
    assert registered(make_plugin_manager(builtins=())) == []


def test_autoload_argument_wins_over_env(fake_entry_point, monkeypatch):
    monkeypatch.setenv("PYRO_PLUGINS_AUTOLOAD", "0")
    assert registered(make_plugin_manager(builtins=(), autoload=True)) == ["fakeep"]
    monkeypatch.setenv("PYRO_PLUGINS_AUTOLOAD", "1")
    assert registered(make_plugin_manager(builtins=(), autoload=False)) == []


def test_entry_point_blocked_by_its_name(fake_entry_point, monkeypatch):
    monkeypatch.setenv("PYRO_PLUGINS_DISABLE", "fakeep")
    assert registered(make_plugin_manager(builtins=())) == []


def test_builtins_come_before_entry_points(fake_entry_point, monkeypatch):
    module_plugin(monkeypatch, "fakeplug.alpha", pyroplug_serializers=lambda: [FakeSerializer])
    pm = make_plugin_manager(builtins=("fakeplug.alpha",))
    assert registered(pm) == ["fakeplug.alpha", "fakeep"]


# ---- the process-wide manager and registry ---------------------------------------------------
def test_reset_plugins_swaps_manager_and_registry(restore_global_manager):
    pm = empty_manager()
    pm.register(Provider(serializers=[FakeSerializer]), name="p")
    plugins.reset_plugins(pm)
    assert plugins.get_plugin_manager() is pm
    reg = registry.get_registry()
    assert reg.serializer("fake") is FakeSerializer
    assert registry.get_registry() is reg  # cached
    pm.register(Provider(serializers=[OtherFakeSerializer]), name="q")
    assert registry.get_registry() is reg  # frozen until invalidated
    registry.invalidate()
    assert sorted(registry.get_registry().serializers) == ["fake", "otherfake"]


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60
    )


def test_import_pyroplug_loads_no_plugins():
    code = (
        "import sys, pyroplug\n"
        "import pyroplug.core.plugins as p, pyroplug.core.registry as r\n"
        "assert p._manager is None, 'plugin manager built at import'\n"
        "assert r._current is None, 'registry built at import'\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('pyroplug.plugins.'))\n"
        "assert not loaded, loaded\n"
        "print('clean')\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"


# ---- the real builtins (written by other engineers; these pass once they exist) -------------
def test_builtin_list_has_what_the_design_names():
    assert BUILTIN_PLUGINS[:10] == (
        "pyroplug.plugins.serializers.serpent",
        "pyroplug.plugins.serializers.json",
        "pyroplug.plugins.serializers.marshal",
        "pyroplug.plugins.serializers.pickle",
        "pyroplug.plugins.serializers.dill",
        "pyroplug.plugins.serializers.msgpack",
        "pyroplug.plugins.servers.thread",
        "pyroplug.plugins.servers.multiplex",
        "pyroplug.plugins.transports.tcp",
        "pyroplug.plugins.transports.unix",
    )
    assert len(set(BUILTIN_PLUGINS)) == len(BUILTIN_PLUGINS)


def test_all_builtins_register(monkeypatch):
    monkeypatch.delenv("PYRO_PLUGINS_DISABLE", raising=False)
    pm = make_plugin_manager(autoload=False)
    assert registered(pm) == list(BUILTIN_PLUGINS)
    reg = Registry.build(pm)
    ids = {name: cls.serializer_id for name, cls in reg.serializers.items()}
    expected = {"serpent": 1, "json": 2, "marshal": 3, "pickle": 4, "dill": 5, "msgpack": 6}
    for name, sid in expected.items():
        if name in ("dill", "msgpack") and importlib.util.find_spec(name) is None:
            continue  # optional dependency missing: the plugin provides nothing
        assert ids[name] == sid
        assert reg.serializer_by_id(sid) is reg.serializer(name)
    assert {"thread", "multiplex"} <= set(reg.server_types)
    assert {"tcp", "u"} <= set(reg.transports)


def test_disabling_a_real_builtin(monkeypatch):
    monkeypatch.setenv("PYRO_PLUGINS_DISABLE", "pyroplug.plugins.serializers.pickle")
    pm = make_plugin_manager(autoload=False)
    assert pm.get_plugin("pyroplug.plugins.serializers.pickle") is None
    reg = Registry.build(pm)
    with pytest.raises(PluginError, match=r"unknown serializer 'pickle'; available: .*serpent"):
        reg.serializer("pickle")
    assert reg.serializer("serpent").serializer_id == 1


def test_third_party_serializer_ids_are_checked() -> None:
    """Ids 8..31 are reserved and ids above 255 do not fit the plan (1..7 may replace a disabled builtin)."""
    for bad_id, message in ((12, "reserved"), (300, "invalid serializer_id")):
        cls = type("Squatter", (Serializer,), {"name": "squatter", "serializer_id": bad_id, "__module__": __name__,
                                               "dumps": lambda self, d: b"", "loads": lambda self, d: None})

        class Plugin:
            @hookimpl
            def pyroplug_serializers(self, _cls: type = cls) -> tuple[type, ...]:
                return (_cls,)

        pm = make_plugin_manager(builtins=(), autoload=False)
        pm.register(Plugin(), name=f"squatter-{bad_id}")
        with pytest.raises(PluginError, match=message):
            Registry.build(pm)
