"""Records: the ``@dataclass`` classes of the compiler's path (syntax tree, signatures, IR,
diagnostics, the op catalogue), built without importing :mod:`dataclasses`.

``@record`` takes ``@dataclass``'s options that nnc uses (``eq``, ``frozen``, ``kw_only``,
``slots``) and gives the same class: the same fields in the same order (inherited first), the same
``__init__`` signature, ``__repr__``, ``__eq__``, ``__hash__``, ``__match_args__`` and
``__post_init__`` call, the same errors for a mutable default or a required field after a default.
:func:`field`, :func:`fields` and :func:`replace` stand in for the :mod:`dataclasses` functions.

Why not ``@dataclass`` itself: importing :mod:`dataclasses` imports :mod:`inspect` (and with it
``ast``, ``dis``, ``tokenize``), and ``@dataclass`` generates and compiles four methods per class;
together about a third of what ``nnc check`` spends importing nnc. Here the methods are written
once, and only ``__init__`` is compiled per class (a few lines).

A record still works with :mod:`dataclasses`' own functions (``dataclasses.fields``,
``replace``, ``asdict``, ``is_dataclass``): its ``__dataclass_fields__`` is built from the
record's fields when first read (importing :mod:`dataclasses` then, off the checker's path).
``tests/test_record.py`` holds records against ``@dataclass`` classes of the same source.
"""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: no default (``dataclasses.MISSING``'s role)
MISSING = _Missing()


class FrozenInstanceError(AttributeError):
    """An assignment to a field of a frozen record (as ``dataclasses.FrozenInstanceError``)."""


class Field:
    """One field of a record: its name, annotation (a string: the modules use ``from __future__
    import annotations``), default or default factory, and whether ``__repr__``/``__eq__`` show it
    and ``__init__`` takes it by keyword only."""

    __slots__ = ("name", "type", "default", "default_factory", "repr", "compare", "kw_only")

    def __init__(self, default=MISSING, default_factory=MISSING, repr=True, compare=True, kw_only=MISSING):
        self.name = self.type = None
        self.default, self.default_factory = default, default_factory
        self.repr, self.compare, self.kw_only = repr, compare, kw_only

    def __repr__(self) -> str:
        return (f"Field(name={self.name!r}, type={self.type!r}, default={self.default!r}, "
                f"default_factory={self.default_factory!r}, repr={self.repr}, compare={self.compare}, "
                f"kw_only={self.kw_only})")


def field(*, default=MISSING, default_factory=MISSING, repr: bool = True, compare: bool = True,
          kw_only=MISSING) -> Field:
    """A field's options, as ``dataclasses.field``: ``tags: list = field(default_factory=list)``."""
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return Field(default, default_factory, repr, compare, kw_only)


def fields(obj) -> tuple[Field, ...]:
    """The fields of a record class or instance, in ``__init__`` order."""
    try:
        return obj.__record_fields__
    except AttributeError:
        raise TypeError("must be called with a record type or instance") from None


def replace(obj, /, **changes):
    """A copy of the record ``obj`` with ``changes`` (as ``dataclasses.replace``)."""
    for f in fields(obj):
        if f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return obj.__class__(**changes)


# ----------------------------------------------------------------------------------------------
# the methods, written once for every record

def _repr(self) -> str:
    inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__record_repr__)
    return f"{type(self).__qualname__}({inner})"


def _eq(self, other):
    if other.__class__ is not self.__class__:
        return NotImplemented
    names = self.__record_compare__
    return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)


def _hash(self) -> int:
    return hash(tuple(getattr(self, n) for n in self.__record_compare__))


def _frozen_setattr(self, name, value):
    if name in self.__record_names__:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")
    object.__setattr__(self, name, value)


def _frozen_delattr(self, name):
    if name in self.__record_names__:
        raise FrozenInstanceError(f"cannot delete field {name!r}")
    object.__delattr__(self, name)


class _Factory:
    """The default of a field with a default factory in a signature (as ``@dataclass`` shows it)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def _init(cls, fields_: tuple[Field, ...], frozen: bool):
    """The ``__init__`` that ``@dataclass`` would write for ``fields_``: positional, then keyword-only
    parameters; defaults; default factories called per instance; ``__post_init__`` called last. A
    frozen record's fields go into its ``__dict__`` directly (past its ``__setattr__``)."""
    env: dict = {"__factory_missing": _FACTORY}
    params: list[str] = []
    kw_only: list[str] = []
    body: list[str] = []
    if frozen:
        body.append("__d = self.__dict__")
    seen_default = False
    for f in fields_:
        arg, value = f.name, f.name
        if f.default is not MISSING:
            env[f"__default_{f.name}"] = f.default
            arg += f"=__default_{f.name}"
        elif f.default_factory is not MISSING:
            env[f"__factory_{f.name}"] = f.default_factory
            arg += "=__factory_missing"
            value = f"__factory_{f.name}() if {f.name} is __factory_missing else {f.name}"
        elif not f.kw_only and seen_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument")
        if not f.kw_only and (f.default is not MISSING or f.default_factory is not MISSING):
            seen_default = True
        if frozen:
            body.append(f"__d[{f.name!r}] = {value}")
        else:
            body.append(f"self.{f.name} = {value}")
        (kw_only if f.kw_only else params).append(arg)
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    args = ", ".join(["self"] + params + (["*"] + kw_only if kw_only else []))
    source = f"def __init__({args}):\n    " + "\n    ".join(body or ["pass"]) + "\n"
    exec(source, env)  # noqa: S102 - our own field names, as @dataclass does
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = {**{f.name: f.type for f in fields_}, "return": None}
    return init


def _is_classvar(annotation) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


def _collect(cls, kw_only: bool) -> tuple[Field, ...]:
    """The fields of ``cls``: its bases' records' fields, then its own annotations in order (a
    redefined field keeps its place); the class attributes become the defaults, as in
    ``@dataclass``."""
    found: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in base.__dict__.get("__record_fields__", ()):
            found[f.name] = f
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if _is_classvar(annotation):
            continue
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name, f.type = name, annotation
        if f.kw_only is MISSING:
            f.kw_only = kw_only
        if f.default is not MISSING and f.default.__class__.__hash__ is None:
            raise ValueError(f"mutable default {type(f.default)} for field {name} is not allowed: "
                             "use default_factory")
        if isinstance(value, Field):  # the class attribute is the default, or nothing
            if f.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        found[name] = f
    return tuple(found.values())


class _AsDataclass:
    """A record's ``__dataclass_fields__``, for :mod:`dataclasses`' functions: ``dataclasses.Field``
    objects made from the record's fields on first read."""

    def __init__(self, fields_: tuple[Field, ...], name: str):
        self.fields, self.name, self.value = fields_, name, None

    def __get__(self, obj, owner=None):
        if self.value is None:
            import dataclasses
            spec = [(f.name, f.type, dataclasses.field(
                default=f.default if f.default is not MISSING else dataclasses.MISSING,
                default_factory=(f.default_factory if f.default_factory is not MISSING
                                 else dataclasses.MISSING),
                repr=f.repr, compare=f.compare, kw_only=f.kw_only)) for f in self.fields]
            shadow = dataclasses.make_dataclass(self.name, spec, init=False, repr=False, eq=False)
            self.value = shadow.__dataclass_fields__
        return self.value


def record(cls=None, /, *, eq: bool = True, frozen: bool = False, kw_only: bool = False,
           slots: bool = False):
    """``@dataclass`` with these options (see the module's docstring); ``@record`` or
    ``@record(kw_only=True, slots=True)``. A class without a docstring gets its name as one.
    (``frozen`` with ``slots`` is refused: nnc has no such record, and pickling one would need
    ``@dataclass``'s ``__getstate__``/``__setstate__``.)"""
    if frozen and slots:
        raise TypeError("record: frozen=True with slots=True is not supported")

    def wrap(c):
        own = dict(c.__dict__)  # what the class defines itself, which @dataclass would keep
        fields_ = _collect(c, kw_only)
        names = tuple(f.name for f in fields_)
        if slots:
            inherited = set()
            for base in c.__mro__[1:-1]:
                s = base.__dict__.get("__slots__", ())
                inherited.update((s,) if isinstance(s, str) else s)
            ns = {k: v for k, v in c.__dict__.items() if k not in names and k not in ("__dict__", "__weakref__")}
            ns["__slots__"] = tuple(n for n in names if n not in inherited)
            qualname = c.__qualname__
            c = type(c)(c.__name__, c.__bases__, ns)
            c.__qualname__ = qualname
        if c.__doc__ is None:
            c.__doc__ = c.__name__
        c.__record_fields__ = fields_
        c.__record_names__ = frozenset(names)
        c.__record_repr__ = tuple(f.name for f in fields_ if f.repr)
        c.__record_compare__ = tuple(f.name for f in fields_ if f.compare)
        c.__dataclass_fields__ = _AsDataclass(fields_, c.__name__)
        c.__match_args__ = tuple(f.name for f in fields_ if not f.kw_only)
        if "__init__" not in own:
            c.__init__ = _init(c, fields_, frozen)
        if "__repr__" not in own:
            c.__repr__ = _repr
        if eq:
            if "__eq__" not in own:
                c.__eq__ = _eq
            if "__hash__" not in own or own["__hash__"] is None:
                c.__hash__ = _hash if frozen else None  # @dataclass(eq=True): hashable only if frozen
        if frozen:
            c.__setattr__ = _frozen_setattr
            c.__delattr__ = _frozen_delattr
        return c

    return wrap if cls is None else wrap(cls)
