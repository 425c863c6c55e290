"""The exception hierarchy is Pyro4 4.82's, class for class, plus PluginError."""

from __future__ import annotations

import builtins
import inspect
import pickle

import pytest

import pyroplug
from pyroplug.core import errors

Pyro4_errors = pytest.importorskip("Pyro4.errors")

PYRO4_NAMES = sorted(
    name
    for name, obj in vars(Pyro4_errors).items()
    if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == "Pyro4.errors"
)


def chain(cls: type) -> list[str]:
    """Class names from ``cls`` up to (and including) Exception."""
    names = []
    for klass in cls.__mro__:
        names.append(klass.__name__)
        if klass is Exception:
            break
    return names


def test_pyro4_has_the_ten_classes_we_expect():
    assert PYRO4_NAMES == sorted(
        [
            "CommunicationError",
            "ConnectionClosedError",
            "DaemonError",
            "MessageTooLargeError",
            "NamingError",
            "ProtocolError",
            "PyroError",
            "SecurityError",
            "SerializeError",
            "TimeoutError",
        ]
    )


@pytest.mark.parametrize("name", PYRO4_NAMES)
def test_same_name_same_place_in_the_tree(name):
    ours = getattr(errors, name)
    theirs = getattr(Pyro4_errors, name)
    assert ours.__name__ == name
    assert chain(ours) == chain(theirs)
    assert [b.__name__ for b in ours.__bases__] == [b.__name__ for b in theirs.__bases__]


def test_every_pair_has_the_same_subclass_relation():
    for a in PYRO4_NAMES:
        for b in PYRO4_NAMES:
            ours = issubclass(getattr(errors, a), getattr(errors, b))
            assert ours == issubclass(getattr(Pyro4_errors, a), getattr(Pyro4_errors, b)), (a, b)


def test_plugin_error_is_the_only_addition():
    ours = sorted(
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, errors.PyroError) and obj.__module__ == errors.__name__
    )
    assert ours == sorted([*PYRO4_NAMES, "PluginError"])
    assert errors.PluginError.__bases__ == (errors.PyroError,)
    assert errors.PyroError.__bases__ == (Exception,)


def test_timeout_error_is_pyros_not_the_builtin():
    assert errors.TimeoutError is not builtins.TimeoutError
    assert not issubclass(errors.TimeoutError, OSError)
    assert issubclass(errors.TimeoutError, errors.CommunicationError)
    assert errors.BuiltinTimeoutError is builtins.TimeoutError


def test_all_is_sorted_and_complete():
    assert errors.__all__ == sorted(errors.__all__)
    assert set(errors.__all__) == {*PYRO4_NAMES, "PluginError"}
    assert errors.ERRORS_BY_NAME == {name: getattr(errors, name) for name in errors.__all__}


def test_docstring_draws_the_whole_tree():
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        assert name in doc


def test_reachable_from_the_package():
    """``pyroplug.errors`` (the Pyro4-style facade module) exposes the very same classes."""
    for name in errors.__all__:
        assert getattr(pyroplug.errors, name) is getattr(errors, name)


@pytest.mark.parametrize("name", [*PYRO4_NAMES, "PluginError"])
def test_errors_carry_args_and_pickle(name):
    cls = getattr(errors, name)
    exc = cls("some message", 42)
    assert str(cls("some message")) == "some message"
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is cls and again.args == ("some message", 42)
    with pytest.raises(errors.PyroError):
        raise exc
