"""expose / oneway / behavior / callback, and which members of a class are remotely reachable.

Rules (the server chapter's): names starting with ``_`` are private and never reachable, except
dunder names such as ``__len__`` that are not in :data:`PRIVATE_DUNDERS`. With ``REQUIRE_EXPOSE``
off (the default) every public method and property is exposed; with it on, only those marked
``@expose``. Plain class or instance attributes are never exposed; properties are. Member tables
are computed once per class and cached.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar, overload

__all__ = [
    "PRIVATE_DUNDERS",
    "Members",
    "behavior",
    "callback",
    "expose",
    "getAttribute",
    "get_exposed_members",
    "get_exposed_property_value",
    "is_private_attribute",
    "members_of",
    "oneway",
    "reset_exposed_members",
    "set_exposed_property_value",
]

T = TypeVar("T")

#: dunder names that are never remotely reachable: the proxy machinery and object protocol need them
PRIVATE_DUNDERS = frozenset(
    """__init__ __init_subclass__ __class__ __module__ __weakref__ __call__ __new__ __del__ __repr__
    __unicode__ __str__ __format__ __nonzero__ __bool__ __coerce__ __cmp__ __eq__ __ne__ __hash__ __ge__
    __gt__ __le__ __lt__ __dir__ __enter__ __exit__ __copy__ __deepcopy__ __sizeof__ __getattr__
    __setattr__ __hasattr__ __getattribute__ __delattr__ __instancecheck__ __subclasscheck__
    __getinitargs__ __getnewargs__ __getnewargs_ex__ __getstate__ __setstate__ __reduce__ __reduce_ex__
    __getstate_for_dict__ __setstate_from_dict__ __subclasshook__ __class_getitem__ __set_name__
    __get__ __set__ __delete__ __dict__ __slots__ __annotations__ __del__ __post_init__""".split()
)

INSTANCE_MODES = ("single", "session", "percall")


def is_private_attribute(name: str) -> bool:
    """True when ``name`` may never be reached remotely."""
    if name in PRIVATE_DUNDERS:
        return True
    if not name.startswith("_"):
        return False
    return not (len(name) > 4 and name.startswith("__") and name.endswith("__"))


def _mark_class(clazz: type) -> None:
    for name, thing in list(vars(clazz).items()):
        if is_private_attribute(name):
            continue
        if isinstance(thing, (classmethod, staticmethod)):
            setattr(thing.__func__, "_pyroExposed", True)
        elif inspect.isfunction(thing) or inspect.ismethoddescriptor(thing):
            try:
                setattr(thing, "_pyroExposed", True)
            except (AttributeError, TypeError):
                pass  # builtin method descriptors cannot carry attributes
        elif isinstance(thing, property):
            for func in (thing.fget, thing.fset, thing.fdel):
                if func is not None:
                    setattr(func, "_pyroExposed", True)
    setattr(clazz, "_pyroExposed", True)
    reset_exposed_members(clazz)


def _expose_one(item: Any) -> Any:
    if isinstance(item, property):
        func = item.fget or item.fset or item.fdel
        if func is None or is_private_attribute(func.__name__):
            raise AttributeError("exposing private names (starting with _) is not allowed")
        setattr(func, "_pyroExposed", True)
        return item
    if isinstance(item, (classmethod, staticmethod)):
        raise AttributeError(
            "using @expose on a classmethod/staticmethod must be done after @classmethod/@staticmethod. "
            f"Method: {item.__func__.__name__}"
        )
    name = getattr(item, "__name__", None)
    if not name:
        raise AttributeError(f"@expose cannot determine what this is: {item!r}")
    if is_private_attribute(name):
        raise AttributeError("exposing private names (starting with _) is not allowed")
    if inspect.isclass(item):
        _mark_class(item)
        return item
    target = item.__func__ if inspect.ismethod(item) else item
    setattr(target, "_pyroExposed", True)
    return item


@overload
def expose(method_or_class: T) -> T: ...
@overload
def expose(
    method_or_class: None = None, *, instance_mode: str | None = None, instance_creator: Callable[[type], Any] | None = None
) -> Callable[[T], T]: ...
def expose(
    method_or_class: Any = None,
    *,
    instance_mode: str | None = None,
    instance_creator: Callable[[type], Any] | None = None,
) -> Any:
    """Mark a method, property or whole class as remotely accessible (matters with REQUIRE_EXPOSE).

    On a class it exposes every public method and property. The server chapter's spelling
    ``@expose(instance_mode="percall", instance_creator=f)`` also sets the class's instance mode,
    like ``@behavior``. Must be applied after ``@classmethod`` / ``@staticmethod``.
    """
    if method_or_class is not None:
        return _expose_one(method_or_class)

    def deco(item: Any) -> Any:
        if instance_mode is not None or instance_creator is not None:
            if not inspect.isclass(item):
                raise TypeError("instance_mode/instance_creator can only be given for a class")
            behavior(instance_mode or "session", instance_creator)(item)
        return _expose_one(item)

    return deco


def oneway(method: T) -> T:
    """Mark a method as oneway: clients don't wait for it, and it never returns a value."""
    target = method.__func__ if isinstance(method, (classmethod, staticmethod)) else method
    setattr(target, "_pyroOneway", True)
    return method


def callback(method: T) -> T:
    """Mark a method as a callback: its exceptions are also raised (and logged) on the side it runs on."""
    target = method.__func__ if isinstance(method, (classmethod, staticmethod)) else method
    setattr(target, "_pyroCallback", True)
    return method


def behavior(instance_mode: str = "session", instance_creator: Callable[[type], Any] | None = None) -> Callable[[T], T]:
    """Class decorator choosing how the daemon creates instances: ``single``, ``session`` or ``percall``."""
    if not isinstance(instance_mode, str):
        raise SyntaxError("behavior decorator is missing argument(s)")
    if instance_mode not in INSTANCE_MODES:
        raise ValueError("invalid instance mode: " + instance_mode)
    if instance_creator is not None and not callable(instance_creator):
        raise TypeError("instance_creator must be a callable")

    def deco(clazz: T) -> T:
        if not inspect.isclass(clazz):
            raise TypeError("behavior decorator can only be used on a class")
        setattr(clazz, "_pyroInstancing", (instance_mode, instance_creator))
        return clazz

    return deco


class Members(NamedTuple):
    """The remotely reachable members of one class."""

    methods: frozenset[str]
    oneway: frozenset[str]
    attrs: frozenset[str]
    #: properties that have a setter
    writable: frozenset[str]
    #: methods marked @callback
    callbacks: frozenset[str]

    def as_dict(self, as_lists: bool = False) -> dict[str, Any]:
        """Pyro4's metadata dict: {"methods", "oneway", "attrs"} as sets (or sorted lists)."""
        conv: Callable[[frozenset[str]], Any] = sorted if as_lists else set
        return {"methods": conv(self.methods), "oneway": conv(self.oneway), "attrs": conv(self.attrs)}


_cache: dict[tuple[type, bool], Members] = {}
_cache_lock = threading.Lock()
#: (class, only_exposed) -> its Members, for the per-call path to look up without a call (read it only;
#: :func:`members_of` fills it)
MEMBERS_BY_CLASS: Mapping[tuple[type, bool], Members] = _cache


def members_of(obj: Any, only_exposed: bool) -> Members:
    """The cached member table of ``obj``'s class (or of ``obj`` when it is a class)."""
    cls = obj if isinstance(obj, type) else type(obj)  # inspect.isclass, without the extra call
    key = (cls, only_exposed)
    found = _cache.get(key)
    if found is None:
        found = _compute(cls, only_exposed)
        with _cache_lock:
            _cache[key] = found
    return found


def _compute(cls: type, only_exposed: bool) -> Members:
    methods, one, attrs, writable, callbacks = set(), set(), set(), set(), set()
    default = not only_exposed
    for name in dir(cls):
        if is_private_attribute(name):
            continue
        try:
            static = inspect.getattr_static(cls, name)
        except AttributeError:
            continue
        if isinstance(static, property):
            func = static.fget or static.fset or static.fdel
            if func is not None and getattr(func, "_pyroExposed", default):
                attrs.add(name)
                if static.fset is not None:
                    writable.add(name)
            continue
        func = static.__func__ if isinstance(static, (classmethod, staticmethod)) else static
        if inspect.isfunction(func) or inspect.ismethoddescriptor(func) or inspect.isbuiltin(func):
            if getattr(func, "_pyroExposed", default):
                methods.add(name)
                if getattr(func, "_pyroOneway", False):
                    one.add(name)
                if getattr(func, "_pyroCallback", False):
                    callbacks.add(name)
    return Members(frozenset(methods), frozenset(one), frozenset(attrs), frozenset(writable), frozenset(callbacks))


def get_exposed_members(obj: Any, only_exposed: bool = True, as_lists: bool = False, use_cache: bool = True) -> dict[str, Any]:
    """Pyro4's API: {"methods", "oneway", "attrs"} of ``obj``'s class."""
    if not use_cache:
        reset_exposed_members(obj, only_exposed)
    return members_of(obj, only_exposed).as_dict(as_lists)


def reset_exposed_members(obj: Any, only_exposed: bool | None = None, as_lists: bool = False) -> None:
    """Forget the cached member table of ``obj``'s class (both modes when ``only_exposed`` is None)."""
    cls = obj if inspect.isclass(obj) else type(obj)
    with _cache_lock:
        for mode in (True, False) if only_exposed is None else (only_exposed,):
            _cache.pop((cls, mode), None)


def get_exposed_property_value(obj: Any, propname: str, only_exposed: bool = True) -> Any:
    """Read an exposed property; AttributeError when it is not one."""
    if propname in members_of(obj, only_exposed).attrs:
        return getattr(obj, propname)
    raise AttributeError(f"attempt to access unexposed or unknown remote attribute '{propname}'")


def set_exposed_property_value(obj: Any, propname: str, value: Any, only_exposed: bool = True) -> None:
    """Write an exposed property that has a setter; AttributeError otherwise."""
    if propname in members_of(obj, only_exposed).writable:
        setattr(obj, propname, value)
        return
    raise AttributeError(f"attempt to access unexposed or unknown remote attribute '{propname}'")


def getAttribute(obj: Any, attr: str, require_expose: bool | None = None) -> Any:  # noqa: N802 - Pyro4 API
    """Resolve one (undotted) exposed method name on ``obj``; AttributeError for anything else."""
    if require_expose is None:
        from pyroplug.core.config import config

        require_expose = config.REQUIRE_EXPOSE
    if not isinstance(attr, str) or is_private_attribute(attr):
        raise AttributeError(f"attempt to access private attribute '{attr}'")
    members = members_of(obj, require_expose)
    if attr in members.methods:
        return getattr(obj, attr)
    if require_expose and attr not in members_of(obj, False).methods | members_of(obj, False).attrs:
        raise AttributeError(f"remote object has no attribute '{attr}'")
    if require_expose:
        raise AttributeError(f"attempt to access unexposed attribute '{attr}'")
    raise AttributeError(f"remote object has no exposed method '{attr}'")
