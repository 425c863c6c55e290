"""Every builtin serializer in the registry passes the conformance suite (a new builtin is picked up)."""

from __future__ import annotations

import pytest

from pyroplug.core.config import Config
from pyroplug.core.plugins import BUILTIN_PLUGINS, make_plugin_manager
from pyroplug.core.registry import Registry
from pyroplug.core.serializer import Serializer
from pyroplug.plugins.serializers.serpent import SerpentSerializer
from pyroplug.testing.serializers import SerializerConformance

# The full builtin list (servers and transports too), without entry points or PYRO_PLUGINS_DISABLE, so
# the run does not depend on what else is installed; third-party plugins subclass the suite themselves.
REGISTRY = Registry.build(make_plugin_manager(disabled="", autoload=False, builtins=BUILTIN_PLUGINS))
SERIALIZERS = sorted(REGISTRY.serializers.values(), key=lambda cls: cls.serializer_id)


def test_every_builtin_serializer_is_registered() -> None:
    assert {cls.name: cls.serializer_id for cls in SERIALIZERS} == {
        "serpent": 1, "json": 2, "marshal": 3, "pickle": 4, "dill": 5, "msgpack": 6,
    }
    assert {cls.name for cls in SERIALIZERS if not cls.safe} == {"pickle", "dill"}


class TestBuiltinSerializers(SerializerConformance):
    """The suite against each registered builtin serializer, with a default Config."""

    @pytest.fixture(params=SERIALIZERS, ids=lambda cls: cls.name)
    def serializer_class(self, request: pytest.FixtureRequest) -> type[Serializer]:
        return request.param


class TestSerpentBytesRepr(SerializerConformance):
    """serpent with SERPENT_BYTES_REPR: bytes travel as bytes literals and come back as bytes."""

    @pytest.fixture
    def serializer_class(self) -> type[Serializer]:
        return SerpentSerializer

    @pytest.fixture
    def config(self) -> Config:
        cfg = Config()
        cfg.SERPENT_BYTES_REPR = True
        return cfg

    def test_bytes_are_literals(self, serializer: Serializer) -> None:
        assert "bytes" in serializer.roundtrip_types
        assert serializer.dumps(b"\x00ab") == b"# serpent utf-8 python3.2\nb'\\x00ab'"
        assert serializer.loads(serializer.dumps([bytearray(b"x"), memoryview(b"y")])) == [b"x", b"y"]
