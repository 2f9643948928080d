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


def record(cls=None, /, *, eq: bool = True, **options):
    """``@dataclass`` (with ``options``) whose ``__repr__`` and ``__eq__`` are written once, here, for
    every class, with the same results as the generated ones: generating them per class is most of
    what a dataclass costs at import, and `nnc check` imports some 40 of them. A class without a
    docstring gets its name as one (``@dataclass`` would compute its signature for it)."""
    from dataclasses import dataclass

    def wrap(c):
        if c.__doc__ is None:
            c.__doc__ = c.__name__
        own = dict(c.__dict__)  # what the class defines itself, which @dataclass would keep
        c = dataclass(c, repr=False, eq=False, **options)
        if "__repr__" not in own:
            c.__repr__ = _repr
        if eq:
            if "__eq__" not in own:
                c.__eq__ = _eq
            if own.get("__hash__") is None:
                c.__hash__ = None  # as @dataclass(eq=True): instances are mutable, so not hashable
        return c

    return wrap if cls is None else wrap(cls)
