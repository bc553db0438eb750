"""The generic strict layer: Python types built from one release's binding surface.

The surface is ``/work/shared/trt-api/tensorrt-<release>.json``, extracted from NVIDIA/TensorRT's pybind11
sources.

Only what the surface lists exists. As pybind11 does:
- a missing attribute, method, enum member or module name raises AttributeError;
- a call with an unknown keyword, a missing or extra positional raises TypeError ("incompatible function
  arguments"); a binding that declares no argument names takes positionals only;
- assigning a read-only property (``def_property_readonly``) raises AttributeError ("can't set attribute"),
  reading a write-only one raises AttributeError ("unreadable attribute");
- setting an attribute the binding lacks on a bound object raises AttributeError (no ``py::dynamic_attr``);
  Python subclasses (trampolines such as ILogger) get a ``__dict__`` and may add their own;
- a class without ``py::init`` raises TypeError ("No constructor defined!").

Behaviour comes from hook classes (``hooks[name]``); a bound method or property the hooks do not model raises
``NotImplementedError`` naming it, so a code path the fakes do not cover fails loudly instead of passing.
The surface omits default values, so ``DEFAULTS`` (read from the same sources, see SOURCES.md) lists which
trailing names of an overload may be left out.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

SHARED_API = Path(os.environ.get("FCN_ROAD_SEG_TRT_API", Path(__file__).resolve().parents[3] / "shared" / "trt-api"))

# (class, method) -> names with a default value in the binding (``"name"_a = ...``), per release; from
# python/src/infer/pyCore.cpp at the commits the surfaces name (see SOURCES.md).
DEFAULTS = {
    "8.6": {("Builder", "create_network"): {"flags"}, ("Logger", "__init__"): {"min_severity"}},
    "10.3": {("Builder", "create_network"): {"flags"}, ("Logger", "__init__"): {"min_severity"},
             ("ICudaEngine", "create_execution_context"): {"strategy"}},
    "10.16": {("Builder", "create_network"): {"flags"}, ("Logger", "__init__"): {"min_severity"},
              ("ICudaEngine", "create_execution_context"): {"strategy", "runtime_config"}},
    "11.1": {("Builder", "create_network"): {"flags"}, ("Logger", "__init__"): {"min_severity"},
             ("ICudaEngine", "create_execution_context"): {"strategy", "runtime_config"}},
}


@functools.lru_cache(maxsize=None)
def load_surface(release: str) -> dict:
    path = SHARED_API / f"tensorrt-{release}.json"
    return json.loads(path.read_text())


def _describe(args, kwargs) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return ", ".join(parts)


def check_call(qualname: str, overloads: list[list[str]], defaults: set[str], args: tuple, kwargs: dict,
               error=TypeError) -> None:
    """Raise ``error`` as pybind11 does when no overload accepts (args, kwargs) by arity and keyword names."""
    for names in overloads:
        if not names:  # no names declared: positionals only (their count is not in the surface)
            if not kwargs:
                return
            continue
        if len(args) > len(names):
            continue
        given = set(names[:len(args)])
        if any(k in given or k not in names for k in kwargs):
            continue
        missing = [n for n in names[len(args):] if n not in kwargs and n not in defaults]
        if not missing:
            return
    signatures = "\n".join(f"    {i + 1}. ({', '.join(['self'] + n)})" for i, n in enumerate(overloads))
    name = qualname.rsplit(".", 1)[-1]
    kind = "constructor" if name == "__init__" else "function"
    raise error(f"{name}(): incompatible {kind} arguments. The following argument types are supported:\n"
                f"{signatures}\n\nInvoked with: {_describe(args, kwargs)}")


class EnumMember:
    """A pybind11 enum value: ``.name``, ``.value``, ``int()``, hashable, equal only to itself."""

    __slots__ = ("_enum", "name", "value")

    def __init__(self, enum: str, name: str, value: int) -> None:
        object.__setattr__(self, "_enum", enum)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "value", value)

    def __setattr__(self, key, value):
        raise AttributeError(f"'{self._enum}' object attribute '{key}' is read-only")

    def __int__(self) -> int:
        return self.value

    __index__ = __int__

    def __eq__(self, other) -> bool:
        return self is other

    def __hash__(self) -> int:
        return hash((self._enum, self.value))

    def __repr__(self) -> str:
        return f"<{self._enum}.{self.name}: {self.value}>"

    __str__ = __repr__


def make_enum(name: str, members: list[str]) -> type:
    short = name.rsplit(".", 1)[-1]
    values = {m: EnumMember(name, m, i) for i, m in enumerate(members)}
    namespace = dict(values)
    namespace["__members__"] = dict(values)
    namespace["__qualname__"] = name
    return type(short, (), namespace)


class Strict:
    """Base of every bound type: rejects attributes its binding lacks."""

    _fake_release = ""
    _fake_props: dict[str, str] = {}

    def __setattr__(self, key, value):
        cls = type(self)
        if key.startswith("_f_") or getattr(cls, "_fake_bound", None) is not cls:  # own state / Python subclass
            object.__setattr__(self, key, value)
            return
        if key not in cls._fake_props:
            raise AttributeError(f"'tensorrt.{cls.__name__}' object has no attribute '{key}'")
        object.__setattr__(self, key, value)  # goes through the property (read-only ones raise)


def _method(cls_name: str, name: str, overloads: list[list[str]], defaults: set[str], impl, static: bool):
    qual = f"{cls_name}.{name}"

    if static:
        def call(*args, **kwargs):
            check_call(qual, overloads, defaults, args, kwargs)
            if impl is None:
                raise NotImplementedError(f"fake tensorrt: {qual} is bound but not modelled by the fakes")
            return impl(*args, **kwargs)
        return staticmethod(call)

    def call(self, *args, **kwargs):
        check_call(qual, overloads, defaults, args, kwargs)
        if impl is None:
            raise NotImplementedError(f"fake tensorrt: {qual} is bound but not modelled by the fakes")
        return impl(self, *args, **kwargs)
    call.__name__ = name
    return call


def _property(cls_name: str, name: str, mode: str, hooks) -> property:
    getter = getattr(hooks, f"get_{name}", None)
    setter = getattr(hooks, f"set_{name}", None)

    def fget(self):
        if mode == "w":
            raise AttributeError("unreadable attribute")
        if getter is not None:
            return getter(self)
        if name in self._f_values:
            return self._f_values[name]
        raise NotImplementedError(f"fake tensorrt: {cls_name}.{name} is bound but not modelled by the fakes")

    def fset(self, value):
        if setter is not None:
            setter(self, value)
        else:
            self._f_values[name] = value

    return property(fget, fset if mode in ("rw", "w") else None)


def build_module_types(surface: dict, release: str, hooks: dict) -> dict[str, object]:
    """Python name -> type (classes and enums) for one release; ``hooks`` maps class names to hook classes."""
    defaults = DEFAULTS[release]
    types: dict[str, object] = {}
    for enum_name, members in surface["enums"].items():
        if "." not in enum_name:
            types[enum_name] = make_enum(enum_name, members)
    cpp_to_py = {spec["cpp"]: name for name, spec in surface["classes"].items()}

    def create(cls_name: str) -> type:
        if cls_name in types:
            return types[cls_name]
        spec = surface["classes"][cls_name]
        bases = tuple(create(cpp_to_py[b]) for b in spec["bases"] if b in cpp_to_py) or (Strict,)
        hook = hooks.get(cls_name)
        props = {k: v for b in bases for k, v in getattr(b, "_fake_props", {}).items()}
        props.update(spec["properties"])
        namespace: dict[str, object] = {"__qualname__": cls_name, "_fake_release": release,
                                        "_fake_props": props, "__module__": "tensorrt"}
        for name, overloads in spec["methods"].items():
            impl = getattr(hook, name, None) if hook is not None else None
            if name in ("__del__", "__init__") or (name.startswith("__") and impl is None):
                continue  # unmodelled dunders (__repr__, __del__) keep Python's defaults
            namespace[name] = _method(cls_name, name, overloads, defaults.get((cls_name, name), set()), impl, False)
        for name, overloads in spec["static"].items():
            impl = getattr(hook, name, None) if hook is not None else None
            namespace[name] = _method(cls_name, name, overloads, defaults.get((cls_name, name), set()), impl, True)
        for name, mode in spec["properties"].items():
            namespace[name] = _property(cls_name, name, mode, hook)
        namespace["__init__"] = _init(cls_name, spec["init"], defaults.get((cls_name, "__init__"), set()), hook)
        if hook is not None and hasattr(hook, "__bytes__"):  # IHostMemory's buffer protocol
            namespace["__bytes__"] = hook.__bytes__
        cls = type(cls_name, bases, namespace)
        cls._fake_bound = cls
        types[cls_name] = cls
        return cls

    for cls_name in surface["classes"]:
        create(cls_name)
    for enum_name, members in surface["enums"].items():
        if "." in enum_name:
            owner, short = enum_name.split(".", 1)
            type.__setattr__(types[owner], short, make_enum(enum_name, members))
    return types


def _init(cls_name: str, overloads: list[list[str]], defaults: set[str], hook):
    impl = getattr(hook, "init", None) if hook is not None else None

    def __init__(self, *args, **kwargs):
        if not overloads:
            raise TypeError(f"tensorrt.{cls_name}: No constructor defined!")
        check_call(f"{cls_name}.__init__", overloads, defaults, args, kwargs)
        object.__setattr__(self, "_f_values", {})
        object.__setattr__(self, "_f_initialised", True)
        if impl is not None:
            impl(self, *args, **kwargs)

    return __init__


def new_bound(cls: type, **state) -> object:
    """Make an object of a bound class as TensorRT itself returns it (no Python constructor involved)."""
    obj = object.__new__(cls)
    object.__setattr__(obj, "_f_values", {})
    object.__setattr__(obj, "_f_initialised", True)
    for key, value in state.items():
        object.__setattr__(obj, f"_f_{key}", value)
    return obj


def require_initialised(obj, what: str) -> None:
    """pybind11 trampolines: a Python subclass that skips the base ``__init__`` is not a valid C++ object."""
    if not obj.__dict__.get("_f_initialised"):
        raise TypeError(f"{what}: {type(obj).__name__}.__init__() must be called when overriding __init__")
