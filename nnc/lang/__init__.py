"""The language's data model, below the compiler, the vocabulary and the engines: the syntax tree
(``ast``: statements and values as the user wrote them, with their spans) and the typed signatures
that bind and check values (``types``: ``Signature``, ``Param``, ``Catalogue`` and the value types).
The compiler parses into it and binds ops with it; ``nnc.vocab`` declares every train-block
vocabulary with it; the runtime validates direct API calls with it. No NumPy, no pydantic.
"""


def _repr(self) -> str:
    from dataclasses import fields
    inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
    return f"{type(self).__qualname__}({inner})"


def _eq(self, other):
    if other.__class__ is not self.__class__:
        return NotImplemented
    from dataclasses import fields
    names = [f.name for f in fields(self) if f.compare]
    return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)


class _Factory:
    """The default of a field with a default factory in a signature (as ``@dataclass`` shows it)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def _init(cls) -> "function":
    """The ``__init__`` that ``@dataclass`` would write for ``cls``'s fields (positional, then
    keyword-only; defaults; default factories called per instance; ``__post_init__`` called last),
    compiled here from a few lines: ``@dataclass``'s own costs ~5x as much per class at import."""
    from dataclasses import MISSING, fields
    env: dict = {"__factory_missing": _FACTORY}
    params: list[str] = []
    kw_only: list[str] = []
    body: list[str] = []
    for f in fields(cls):
        if not f.init:  # pragma: no cover - no record has one
            raise TypeError("record fields are all in __init__")
        arg = f.name
        if f.default is not MISSING:
            env[f"__default_{f.name}"] = f.default
            arg += f"=__default_{f.name}"
            body.append(f"self.{f.name} = {f.name}")
        elif f.default_factory is not MISSING:
            env[f"__factory_{f.name}"] = f.default_factory
            arg += "=__factory_missing"
            body.append(f"self.{f.name} = __factory_{f.name}() if {f.name} is __factory_missing else {f.name}")
        else:
            body.append(f"self.{f.name} = {f.name}")
        (kw_only if f.kw_only else params).append(arg)
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    args = ", ".join(["self"] + params + (["*"] + kw_only if kw_only else []))
    source = f"def __init__({args}):\n    " + "\n    ".join(body or ["pass"]) + "\n"
    exec(source, env)  # noqa: S102 - our own field names, as @dataclass does
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = {**{f.name: f.type for f in fields(cls)}, "return": None}
    return init


def record(cls=None, /, *, eq: bool = True, **options):
    """``@dataclass`` (with ``options``) whose ``__repr__`` and ``__eq__`` are written once, here, for
    every class, with the same results as the generated ones, and whose ``__init__`` is written by
    :func:`_init`: generating them per class is most of what a dataclass costs at import, and `nnc
    check` imports some 50 of them. A class without a docstring gets its name as one
    (``@dataclass`` would compute its signature for it)."""
    from dataclasses import dataclass

    def wrap(c):
        if c.__doc__ is None:
            c.__doc__ = c.__name__
        own = dict(c.__dict__)  # what the class defines itself, which @dataclass would keep
        c = dataclass(c, init=False, repr=False, eq=False, **options)
        if "__init__" not in own:
            c.__init__ = _init(c)
        if "__repr__" not in own:
            c.__repr__ = _repr
        if eq:
            if "__eq__" not in own:
                c.__eq__ = _eq
            if own.get("__hash__") is None:
                c.__hash__ = None  # as @dataclass(eq=True): instances are mutable, so not hashable
        return c

    return wrap if cls is None else wrap(cls)
