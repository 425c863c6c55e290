"""Config: Pyro4 4.82's items and defaults, the PYRO_* environment overlay, copies and the dump."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pyroplug
from pyroplug.core import config as config_module
from pyroplug.core.config import Config, item_names
from pyroplug.core.hookspec import hookimpl
from pyroplug.core.plugins import BUILTIN_PLUGINS, make_plugin_manager
from pyroplug.core.serializer import Serializer

Pyro4_configuration = pytest.importorskip("Pyro4.configuration")

ROOT = Path(__file__).resolve().parents[2]
OURS_ONLY = {"SERPENT_BYTES_REPR"}
DIFFERENT_DEFAULT = {"REQUIRE_EXPOSE": (True, False)}  # Pyro4's default, ours


def pyro4_config(useenvironment: bool = False):
    cfg = Pyro4_configuration.Configuration()
    cfg.reset(useenvironment=useenvironment)
    return cfg


@pytest.fixture
def clean_env(monkeypatch):
    """No PYRO_* variable from the outside world leaks into a test."""
    for key in list(os.environ):
        if key.startswith("PYRO_"):
            monkeypatch.delenv(key)
    return monkeypatch


# ---- items and defaults --------------------------------------------------------------------
def test_pyro4_has_45_items():
    assert len(Pyro4_configuration.Configuration.__slots__) == 45


def test_same_items_as_pyro4_plus_serpent_bytes_repr():
    assert set(item_names()) == set(Pyro4_configuration.Configuration.__slots__) | OURS_ONLY
    assert len(item_names()) == 46
    assert len(set(item_names())) == 46


@pytest.mark.parametrize("name", sorted(Pyro4_configuration.Configuration.__slots__))
def test_default_matches_pyro4(name):
    ours = getattr(Config(), name)
    theirs = getattr(pyro4_config(), name)
    if name in DIFFERENT_DEFAULT:
        assert (theirs, ours) == DIFFERENT_DEFAULT[name]
    else:
        assert ours == theirs
    assert type(ours) is type(theirs)


def test_our_own_items():
    assert Config().SERPENT_BYTES_REPR is False
    assert Config().REQUIRE_EXPOSE is False


def test_slots_catch_typos():
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.SERIALISER = "json"  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        pyro4_config().SERIALISER = "json"


def test_global_config():
    assert isinstance(config_module.config, Config)
    assert pyroplug.config is config_module.config


# ---- the environment overlay ---------------------------------------------------------------
ENV_CASES = {
    "PYRO_HOST": "0.0.0.0",
    "PYRO_NS_PORT": "4242",
    "PYRO_NS_AUTOCLEAN": "3.5",
    "PYRO_NATHOST": "nat.example.com",  # default None: stays text
    "PYRO_NS_BCHOST": "",
    "PYRO_COMMTIMEOUT": "1.25",
    "PYRO_THREADPOOL_SIZE": "7",
    "PYRO_MAX_MESSAGE_SIZE": "1048576",
    "PYRO_SERIALIZER": "json",
    "PYRO_SERIALIZERS_ACCEPTED": "json,pickle",
    "PYRO_PICKLE_PROTOCOL_VERSION": "2",
    "PYRO_COMPRESSION": "1",
    "PYRO_SOCK_REUSE": "off",
    "PYRO_METADATA": "no",
    "PYRO_SSL": "yes",
    "PYRO_AUTOPROXY": "FALSE",
    "PYRO_DETAILED_TRACEBACK": "On",
    "PYRO_ONEWAY_THREADED": "0",
    "PYRO_LOGWIRE": "true",
    "PYRO_SSL_CACERTS": "/etc/ssl/certs",
    "PYRO_BROADCAST_ADDRS": "10.0.0.255, ''",
}


@pytest.mark.parametrize("var", sorted(ENV_CASES))
def test_env_overlay_is_coerced_like_pyro4(clean_env, var):
    clean_env.setenv(var, ENV_CASES[var])
    name = var[len("PYRO_") :]
    ours = getattr(Config.from_env(), name)
    theirs = getattr(pyro4_config(useenvironment=True), name)
    assert ours == theirs
    assert type(ours) is type(theirs)


def test_from_env_takes_a_mapping(clean_env):
    cfg = Config.from_env({"PYRO_NS_PORT": "1", "PYRO_COMPRESSION": "true", "NOT_PYRO": "x", "PYRO_UNKNOWN": "y"})
    assert cfg.NS_PORT == 1 and cfg.COMPRESSION is True
    clean_env.setenv("PYRO_NS_PORT", "2")
    assert Config.from_env({}).NS_PORT == 9090  # an explicit mapping ignores os.environ
    assert Config.from_env().NS_PORT == 2


@pytest.mark.parametrize("text", ["0", "off", "no", "false", "OFF", "No", "False", " false "])
def test_false_words(text):
    assert Config.from_env({"PYRO_SOCK_REUSE": text}).SOCK_REUSE is False


@pytest.mark.parametrize("text", ["1", "yes", "on", "true", "YES", "On", "TRUE", "true\n"])
def test_true_words(text):
    assert Config.from_env({"PYRO_COMPRESSION": text}).COMPRESSION is True


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("PYRO_COMPRESSION", "maybe"),
        ("PYRO_COMPRESSION", ""),
        ("PYRO_SSL", "2"),
        ("PYRO_NS_PORT", "ninety"),
        ("PYRO_NS_PORT", "9090.5"),
        ("PYRO_NS_PORT", ""),
        ("PYRO_COMMTIMEOUT", "soon"),
        ("PYRO_THREADPOOL_SIZE", "0x10"),
    ],
)
def test_invalid_values_raise_value_error_naming_the_variable(var, value):
    with pytest.raises(ValueError, match=var) as info:
        Config.from_env({var: value})
    assert repr(value)[1:-1] in str(info.value) or value.strip() in str(info.value)


def test_invalid_value_in_os_environ_fails_reset(clean_env):
    clean_env.setenv("PYRO_MAX_RETRIES", "many")
    cfg = Config()
    with pytest.raises(ValueError, match="PYRO_MAX_RETRIES"):
        cfg.reset()
    cfg.reset(useenvironment=False)
    assert cfg.MAX_RETRIES == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("json", {"json"}),
        ("serpent,marshal,json", {"serpent", "marshal", "json"}),
        ("serpent, pickle ,dill", {"serpent", "pickle", "dill"}),  # Pyro4 would keep the spaces
        ("msgpack,", {"msgpack"}),
        ("", set()),
    ],
)
def test_serializers_accepted_from_comma_text(text, expected):
    value = Config.from_env({"PYRO_SERIALIZERS_ACCEPTED": text}).SERIALIZERS_ACCEPTED
    assert value == expected
    assert type(value) is set


def test_ns_host_takes_hosts_default_not_its_env_value(clean_env):
    clean_env.setenv("PYRO_HOST", "0.0.0.0")
    cfg = Config.from_env()
    assert (cfg.HOST, cfg.NS_HOST) == ("0.0.0.0", "localhost")
    pyro4 = pyro4_config(useenvironment=True)
    assert (pyro4.HOST, pyro4.NS_HOST) == ("0.0.0.0", "localhost")


def test_whole_env_overlay_equals_pyro4(clean_env):
    for var, value in ENV_CASES.items():
        clean_env.setenv(var, value)
    ours = Config.from_env().as_dict()
    theirs = pyro4_config(useenvironment=True).asDict()
    for name in theirs:
        if name not in DIFFERENT_DEFAULT:
            assert ours[name] == theirs[name], name


# ---- reset, copy, as_dict ------------------------------------------------------------------
def test_reset_restores_defaults(clean_env):
    cfg = Config()
    cfg.HOST = "example.com"
    cfg.NS_PORT = 1
    cfg.SERIALIZERS_ACCEPTED.add("pickle")
    cfg.SERPENT_BYTES_REPR = True
    cfg.reset(useenvironment=False)
    assert cfg == Config()
    assert cfg.SERIALIZERS_ACCEPTED == {"serpent", "marshal", "json"}


def test_reset_applies_the_environment(clean_env):
    clean_env.setenv("PYRO_SERIALIZER", "marshal")
    cfg = Config()
    cfg.reset()
    assert cfg.SERIALIZER == "marshal"
    cfg.reset(useenvironment=False)
    assert cfg.SERIALIZER == "serpent"


def test_instances_do_not_share_the_accepted_set():
    a, b = Config(), Config()
    a.SERIALIZERS_ACCEPTED.add("pickle")
    assert "pickle" not in b.SERIALIZERS_ACCEPTED
    assert "pickle" not in Config().SERIALIZERS_ACCEPTED


def test_copy_is_independent():
    original = Config()
    original.NS_PORT = 1234
    original.SERIALIZERS_ACCEPTED = {"json"}
    copy = original.copy()
    assert copy == original and copy is not original
    assert copy.SERIALIZERS_ACCEPTED is not original.SERIALIZERS_ACCEPTED
    copy.SERIALIZERS_ACCEPTED.add("pickle")
    copy.NS_PORT = 1
    copy.HOST = "elsewhere"
    assert original.SERIALIZERS_ACCEPTED == {"json"}
    assert (original.NS_PORT, original.HOST) == (1234, "localhost")


def test_copy_normalises_accepted_given_as_text_or_list():
    cfg = Config()
    cfg.SERIALIZERS_ACCEPTED = "json, marshal"  # type: ignore[assignment]
    assert cfg.copy().SERIALIZERS_ACCEPTED == {"json", "marshal"}
    cfg.SERIALIZERS_ACCEPTED = ["serpent"]  # type: ignore[assignment]
    assert cfg.copy().SERIALIZERS_ACCEPTED == {"serpent"}


def test_as_dict_and_asdict():
    cfg = Config()
    cfg.NS_PORT = 5
    d = cfg.as_dict()
    assert list(d) == list(item_names())
    assert d["NS_PORT"] == 5 and d["SERIALIZERS_ACCEPTED"] == {"serpent", "marshal", "json"}
    assert cfg.asDict() == d
    d["NS_PORT"] = 6
    assert cfg.NS_PORT == 5
    assert Config(**d).NS_PORT == 6


@pytest.mark.parametrize("text", ["<broadcast>, 0.0.0.0", "''", "a,b, c ,''", ""])
def test_parse_addresses_string_like_pyro4(text):
    assert Config().parseAddressesString(text) == pyro4_config().parseAddressesString(text)
    assert Config.parseAddressesString(text) == pyro4_config().parseAddressesString(text)


# ---- dump ----------------------------------------------------------------------------------
class DumpSerializer(Serializer):
    name = "dumpfake"
    serializer_id = 222

    def dumps(self, data):
        return b""

    def loads(self, data):
        return None


class DumpPlugin:
    @hookimpl
    def pyroplug_serializers(self):
        return [DumpSerializer]


def test_dump_lists_versions_plugins_and_items(clean_env):
    clean_env.setenv("PYRO_LOGFILE", "/tmp/pyro.log")
    pm = make_plugin_manager(disabled="", builtins=(), autoload=False)
    pm.register(DumpPlugin(), name="dump-plugin")
    cfg = Config()
    cfg.NS_PORT = 4242
    text = cfg.dump(pm)
    lines = text.splitlines()
    assert lines[0].startswith("pyroplug version: ") and "4.82" in lines[0]
    assert "Protocol version: 48" in lines
    plugins_at = lines.index("Plugins:")
    assert lines[plugins_at + 1] == "    dump-plugin [pyroplug (builtin)]: serializers: dumpfake (id 222)"
    settings = lines[lines.index("Currently active configuration settings:") + 1 :]
    assert settings == sorted(settings)
    assert "NS_PORT = 4242" in settings
    assert "SERIALIZERS_ACCEPTED = json,marshal,serpent" in settings
    assert "LOGFILE = /tmp/pyro.log" in settings
    assert "LOGLEVEL = None" in settings
    assert len(settings) == len(item_names()) + 2


def test_dump_survives_a_broken_plugin():
    class Broken:
        @hookimpl
        def pyroplug_transports(self):
            raise RuntimeError("kaputt")

    pm = make_plugin_manager(disabled="", builtins=(), autoload=False)
    pm.register(Broken(), name="broken")
    text = Config().dump(pm)
    assert "plugins could not be loaded" in text and "kaputt" in text
    assert "NS_PORT = 9090" in text


def _run_config_module(**env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYRO_")}
    environ.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run(
        [sys.executable, "-m", "pyroplug.core.config"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_python_m_config_prints_the_dump():
    result = _run_config_module(PYRO_NS_PORT="4243", PYRO_COMPRESSION="yes", PYRO_PLUGINS_AUTOLOAD="0")
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0].startswith("pyroplug version:")
    assert "NS_PORT = 4243" in out
    assert "COMPRESSION = True" in out
    assert "REQUIRE_EXPOSE = False" in out
    assert "Plugins:" in out


def test_python_m_config_lists_the_builtin_plugins():
    result = _run_config_module(PYRO_PLUGINS_AUTOLOAD="0")
    assert result.returncode == 0, result.stderr
    block = result.stdout.split("Plugins:\n", 1)[1].split("Currently active", 1)[0]
    assert "could not be loaded" not in block, block
    for name in BUILTIN_PLUGINS:
        assert f"    {name} [pyroplug (builtin)]" in block
    assert "serpent (id 1)" in block and "marshal (id 3)" in block
