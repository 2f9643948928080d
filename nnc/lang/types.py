"""Argument types and call signatures: the typed, validated values of ops, initialisers, losses,
optimizers, schedules and data sources (those vocabularies are declared in ``nnc/vocab.py``).

A :class:`Signature` binds a call as written (``conv2d(16, kernel=3, padding=same)``) to a dict
of normalised Python values with every default filled in, or raises :class:`ArgError` pointing at
the offending argument. ``let`` constants are substituted before binding (see ``lower.py``).
"""
from __future__ import annotations

import math
from collections.abc import Callable

from . import ast as A
from ..errors import SourceSpan, did_you_mean
from ..record import field, record

TYPE_CHECKING = False  # typing's constant, without importing typing (`nnc check` never does)
if TYPE_CHECKING:
    from typing import Any

REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()


class ArgError(Exception):
    """A bad argument value: becomes a diagnostic at ``span``.

    ``param`` names the parameter the value was given to, once known (``maxpool2d's `padding```,
    set by :meth:`Signature.bind`), so that a later pass can say where the value went.
    """

    param: str | None = None

    def __init__(self, code: str, message: str, hint: str | None = None,
                 span: SourceSpan | None = None):
        super().__init__(message)
        self.code, self.message, self.hint, self.span = code, message, hint, span


def show(v: A.Value) -> str:
    """A value as the user wrote it, for messages."""
    if isinstance(v, A.Num):
        return v.text
    if isinstance(v, A.Str):
        return v.text
    if isinstance(v, A.Bool):
        return "true" if v.value else "false"
    if isinstance(v, A.Name):
        return v.name
    if isinstance(v, A.List):
        return "[" + ", ".join(show(x) for x in v.items) + "]"
    if isinstance(v, A.Call):
        if v.args is None:
            return v.name
        parts = [show(a) if not isinstance(a, A.KwArg) else f"{a.name}={show(a.value)}" for a in v.args]
        return f"{v.name}({', '.join(parts)})"
    if isinstance(v, A.BinOp):
        return f"{show(v.left)} {v.op} {show(v.right)}"
    if isinstance(v, A.Neg):
        return f"-{show(v.operand)}"
    if isinstance(v, A.Paren):
        return f"({show(v.inner)})"
    return str(v)


def _short(text: str, limit: int = 24) -> str:
    """A literal for a message: megabyte-long numbers are shown by their start and length."""
    return text if len(text) <= limit else f"{text[:12]}... ({len(text):,} characters)"


def kind_of(v: A.Value) -> str:
    return {A.Num: "a number", A.Str: "a string", A.Bool: "a boolean", A.Name: "a name",
            A.List: "a list", A.Call: "a call", A.BinOp: "an expression", A.Neg: "an expression",
            A.Paren: "an expression"}.get(type(v), "a value")


def fmt_number(x: float | int) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x)) if abs(x) >= 1e4 else repr(x)
    return repr(x)


class Type:
    """Base class: ``coerce`` turns an AST value into a normalised Python value."""

    doc = "value"

    def coerce(self, v: A.Value) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def bad(self, v: A.Value, hint: str | None = None) -> ArgError:
        return ArgError("E401", f"expected {self.doc}, got {kind_of(v)} `{show(v)}`", hint, v.span)

    def render(self, value: Any) -> str:
        """A normalised value back in nnspec syntax (docs, defaults in messages)."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list):
            return "[" + ", ".join(self.render(x) for x in value) + "]"
        if isinstance(value, dict) and "kind" in value:
            args = [f"{k}={self.render(x)}" for k, x in value.items() if k != "kind"]
            return f"{value['kind']}({', '.join(args)})" if args else value["kind"]
        if isinstance(value, float):
            return fmt_number(value)
        return str(value)

    def json_schema(self) -> dict:
        return {}

    def vocabulary(self) -> dict[str, str]:
        """The bare names this type gives a meaning to, each with what it is (``{"same": "padding"}``).

        ``let`` may not take these names (a constant would silently change what they mean), and an
        error about a name given to the wrong parameter can say where the name belongs.
        """
        return {}


@record
class Int(Type):
    min: int | None = None
    max: int | None = None

    @property
    def doc(self) -> str:  # type: ignore[override]
        if self.min is not None and self.max is not None:
            return f"an integer in [{self.min}, {self.max}]"
        if self.min is not None:
            return f"an integer >= {self.min}"
        return "an integer"

    def coerce(self, v):
        if isinstance(v, A.Num) and isinstance(v.value, float) and not math.isfinite(v.value):
            raise ArgError("E402", f"`{_short(v.text)}` is not a finite number", f"expected {self.doc}", v.span)
        if isinstance(v, A.Num) and v.source is not None and isinstance(v.value, float):
            hint = ("`/` always gives a float; use `//` for a whole-number division" if "/" in v.source
                    else "make every number in it a whole number")
            raise ArgError("E401", f"expected an integer, got `{_short(v.source, 40)}` = {v.text}", hint, v.span)
        if isinstance(v, A.Num) and isinstance(v.value, float) and v.value.is_integer() and "." not in v.text:
            value = int(v.value)  # 1e3 written for 1000
        elif isinstance(v, A.Num) and v.is_int:
            value = v.value
        elif isinstance(v, A.Num):
            raise ArgError("E401", f"expected an integer, got `{v.text}`",
                           f"write a whole number, e.g. {max(1, round(v.value))}", v.span)
        else:
            raise self.bad(v)
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise ArgError("E402", f"{value} is out of range: expected {self.doc}", None, v.span)
        return value

    def json_schema(self):
        s = {"type": "integer"}
        if self.min is not None:
            s["minimum"] = self.min
        if self.max is not None:
            s["maximum"] = self.max
        return s


@record
class Float(Type):
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False

    @property
    def doc(self) -> str:  # type: ignore[override]
        if self.min is not None and self.max is not None:
            lo = "(" if self.min_open else "["
            hi = ")" if self.max_open else "]"
            return f"a number in {lo}{fmt_number(self.min)}, {fmt_number(self.max)}{hi}"
        if self.min is not None:
            return f"a number {'>' if self.min_open else '>='} {fmt_number(self.min)}"
        if self.max is not None:
            return f"a number {'<' if self.max_open else '<='} {fmt_number(self.max)}"
        return "a number"

    def coerce(self, v):
        if not isinstance(v, A.Num):
            raise self.bad(v)
        try:
            value = float(v.value)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            raise ArgError("E402", f"`{_short(v.text)}` is not a finite number", f"expected {self.doc}", v.span)
        low_bad = self.min is not None and (value <= self.min if self.min_open else value < self.min)
        high_bad = self.max is not None and (value >= self.max if self.max_open else value > self.max)
        if low_bad or high_bad:
            raise ArgError("E402", f"{v.text} is out of range: expected {self.doc}", None, v.span)
        return value

    def json_schema(self):
        s: dict = {"type": "number"}
        if self.min is not None:
            s["exclusiveMinimum" if self.min_open else "minimum"] = self.min
        if self.max is not None:
            s["exclusiveMaximum" if self.max_open else "maximum"] = self.max
        return s


class Bool(Type):
    doc = "`true` or `false`"

    def coerce(self, v):
        if isinstance(v, A.Bool):
            return v.value
        if isinstance(v, (A.Name, A.Str)):
            word = v.name if isinstance(v, A.Name) else v.value
            if word.lower() in ("true", "false", "yes", "no", "on", "off"):
                fix = "true" if word.lower() in ("true", "yes", "on") else "false"
                raise self.bad(v, f"did you mean `{fix}`?")
        raise self.bad(v)

    def json_schema(self):
        return {"type": "boolean"}


class Str(Type):
    doc = "a string"

    def coerce(self, v):
        if isinstance(v, A.Str):
            return v.value
        hint = f'write it in quotes: "{show(v)}"' if isinstance(v, A.Name) else None
        raise self.bad(v, hint)

    def json_schema(self):
        return {"type": "string"}


@record
class Enum(Type):
    choices: tuple[str, ...]
    what: str = "value"

    @property
    def doc(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(f"`{c}`" for c in self.choices)

    def coerce(self, v):
        if isinstance(v, (A.Name, A.Str)):
            word = v.name if isinstance(v, A.Name) else v.value
            if word in self.choices:
                return word
            raise ArgError("E310", f"unknown {self.what} `{word}`: expected {self.doc}",
                           did_you_mean(word, self.choices), v.span)
        if isinstance(v, A.Call) and v.args is None and v.name in self.choices:
            return v.name
        raise self.bad(v)

    def json_schema(self):
        return {"enum": list(self.choices)}

    def vocabulary(self):
        return {c: self.what for c in self.choices}


@record
class Ints(Type):
    """An integer or a list of ``n`` integers (kernel, stride, dilation) -> list of ``n`` ints."""

    n: int
    min: int = 1
    labels: str = ""  # what the list's entries are, for messages: "ph, pw" -> "a list [ph, pw]"

    @property
    def doc(self) -> str:  # type: ignore[override]
        if self.n == 1:
            return f"an integer >= {self.min}"
        return f"an integer >= {self.min} or a list " + (f"[{self.labels}]" if self.labels else f"of {self.n}")

    def coerce(self, v):
        item = Int(min=self.min)
        if isinstance(v, A.List):
            if len(v.items) != self.n:
                raise ArgError("E401", f"expected {self.n} values, got {len(v.items)} in `{show(v)}`",
                               f"write one integer, or a list of {self.n}", v.span)
            return [item.coerce(x) for x in v.items]
        if isinstance(v, A.Num):
            return [item.coerce(v)] * self.n
        raise self.bad(v)

    def render(self, value):
        return str(value[0]) if len(set(value)) == 1 else super().render(value)

    def json_schema(self):
        return {"type": "array", "items": {"type": "integer", "minimum": self.min},
                "minItems": self.n, "maxItems": self.n}


@record
class Padding(Type):
    """``valid``, ``same``, an integer or a list of ``n`` -> "valid" | "same" | list of n ints."""

    n: int

    doc = "`valid`, `same`, an integer or a list of integers"

    def coerce(self, v):
        if isinstance(v, (A.Name, A.Str)):
            return Enum(("valid", "same"), "padding").coerce(v)
        return Ints(self.n, min=0).coerce(v)

    def render(self, value):
        return value if isinstance(value, str) else Ints(self.n).render(value)

    def json_schema(self):
        return {"anyOf": [{"enum": ["valid", "same"]}, Ints(self.n, 0).json_schema()]}

    def vocabulary(self):
        return {"valid": "padding", "same": "padding"}


class ShapeList(Type):
    doc = "a list of positive integers (one may be -1)"

    def coerce(self, v):
        if not isinstance(v, A.List) or not v.items:
            raise self.bad(v, "e.g. [1, 28, 28]")
        out = []
        for x in v.items:
            if isinstance(x, A.Num) and x.is_int and x.value == -1:
                out.append(-1)
            else:
                out.append(Int(min=1).coerce(x))
        if out.count(-1) > 1:
            raise ArgError("E402", "only one entry of a shape may be -1", None, v.span)
        return out

    def json_schema(self):
        return {"type": "array", "items": {"type": "integer"}}


@record
class ListOf(Type):
    item: Type
    unique: bool = True  # a repeated item counts once (metrics); False keeps every entry (class weights)

    @property
    def doc(self) -> str:  # type: ignore[override]
        return f"a list of {self.item.doc}"

    def coerce(self, v):
        if isinstance(v, A.List):
            values = [self.item.coerce(x) for x in v.items]
        else:  # a single item is accepted where a list goes: metrics = accuracy
            values = [self.item.coerce(v)]
        return list(dict.fromkeys(values)) if self.unique else values

    def json_schema(self):
        return {"type": "array", "items": self.item.json_schema()}

    def vocabulary(self):
        return self.item.vocabulary()


@record
class OneOf(Type):
    options: tuple[Type, ...]
    doc_text: str = ""

    @property
    def doc(self) -> str:  # type: ignore[override]
        return self.doc_text or " or ".join(o.doc for o in self.options)

    def coerce(self, v):
        first: ArgError | None = None
        for opt in self.options:
            try:
                return opt.coerce(v)
            except ArgError as err:
                if err.code != "E401" and first is None:
                    first = err  # a range error in the right kind beats a type error
        raise first or self.bad(v)

    def json_schema(self):
        return {"anyOf": [o.json_schema() for o in self.options]}

    def vocabulary(self):
        out: dict[str, str] = {}
        for o in self.options:
            out.update(o.vocabulary())
        return out


# ----------------------------------------------------------------------------------------------
# signatures

@record
class Param:
    name: str
    type: Type
    default: Any = REQUIRED
    doc: str = ""


@record
class Signature:
    """A callable's parameters: positional ones in order, then keyword-only ones."""

    name: str
    params: list[Param]
    positional: int = 0  # how many of ``params`` may be given by position
    doc: str = ""
    check: Callable[[dict, A.Call], None] | None = None  # cross-parameter validation

    def __post_init__(self):
        self.by_name = {p.name: p for p in self.params}

    def usage(self) -> str:
        parts = []
        for i, p in enumerate(self.params):
            if i < self.positional and p.default is REQUIRED:
                parts.append(p.name)
            elif p.default is REQUIRED:
                parts.append(f"{p.name}=...")
            elif p.default is None:  # optional and off unless given: csv's `text`
                parts.append(f"[{p.name}=...]")
            else:
                parts.append(f"{p.name}={p.type.render(p.default)}")
        return f"{self.name}({', '.join(parts)})" if parts else self.name

    def bind(self, call: A.Call, what: str = "") -> dict:
        """Validate a call's arguments; return ``{name: value}`` with defaults filled in.

        Raises a list of :class:`ArgError` (as ``ArgErrors``) so that every bad argument is reported.
        """
        errors: list[ArgError] = []
        out: dict[str, Any] = {}
        given: dict[str, SourceSpan] = {}
        what = what or f"`{self.name}`"
        positional = call.positional
        seen_kw = False
        for a in call.args or []:
            if isinstance(a, A.KwArg):
                seen_kw = True
            elif seen_kw:
                errors.append(ArgError("E404", f"{what}: positional argument `{show(a)}` after keyword arguments",
                                       f"put positional arguments first: usage: {self.usage()}", a.span))
                break
        if len(positional) > self.positional:
            extra = positional[self.positional]
            names = ", ".join(p.name for p in self.params[:self.positional])
            takes = (f"takes {self.positional} positional argument{'s' if self.positional != 1 else ''}"
                     f" ({names})" if self.positional else "takes no positional arguments")
            kw = [p.name for p in self.params[self.positional:]]
            errors.append(ArgError("E404", f"{what} {takes}, got {len(positional)}",
                                   f"pass the others by keyword: {', '.join(k + '=...' for k in kw[:4])}"
                                   if kw else f"usage: {self.usage()}", extra.span))
        for p, v in zip(self.params[:self.positional], positional):
            given[p.name] = v.span
            try:
                out[p.name] = p.type.coerce(v)
            except ArgError as err:
                err.message = f"{what} `{p.name}`: {err.message}"
                err.param = err.param or f"{self.name}'s `{p.name}`"
                errors.append(err)
        suggested: set[str] = set()
        for kw in call.keywords:
            p = self.by_name.get(kw.name)
            if p is None:
                import difflib  # the error path only
                close = difflib.get_close_matches(kw.name, list(self.by_name), n=1, cutoff=0.6)
                suggested.update(close)
                hint = did_you_mean(kw.name, list(self.by_name)) or f"usage: {self.usage()}"
                errors.append(ArgError("E302", f"{what} has no parameter `{kw.name}`", hint, kw.name_span))
                continue
            if kw.name in given:
                errors.append(ArgError("E309", f"{what} `{kw.name}` is given twice", "keep one of them (a positional "
                                       "argument counts as given)", kw.span))
                continue
            given[kw.name] = kw.span
            try:
                out[p.name] = p.type.coerce(kw.value)
            except ArgError as err:
                err.message = f"{what} `{p.name}`: {err.message}"
                err.param = err.param or f"{self.name}'s `{p.name}`"
                errors.append(err)
        for p in self.params:
            if p.name in given:
                continue
            if p.default is REQUIRED and p.name in suggested:
                continue  # `kernal=3` already says "did you mean `kernel`?"
            if p.default is REQUIRED:
                errors.append(ArgError("E403", f"{what} needs `{p.name}`", f"usage: {self.usage()}",
                                       call.span))
            else:
                out[p.name] = p.default
        if not errors and self.check is not None:
            try:
                self.check(out, call)
            except ArgError as err:
                errors.append(err)
        if errors:
            raise ArgErrors(errors)
        return out

    def json_schema(self) -> dict:
        props = {p.name: {**p.type.json_schema(), **({"default": p.default} if p.default is not REQUIRED
                                                      and not callable(p.default) else {}),
                          **({"description": p.doc} if p.doc else {})} for p in self.params}
        return {"type": "object", "properties": props,
                "required": [p.name for p in self.params if p.default is REQUIRED]}


class ArgErrors(Exception):
    def __init__(self, errors: list[ArgError]):
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors


@record
class Catalogue(Type):
    """A value that is one of a family of calls: ``adam(lr=0.01)``, ``cosine``, ``he_normal``."""

    what: str
    signatures: dict[str, Signature] = field(default_factory=dict)

    @property
    def doc(self) -> str:  # type: ignore[override]
        return f"a {self.what}: " + ", ".join(f"`{s.usage()}`" for s in self.signatures.values())

    def add(self, sig: Signature) -> Signature:
        self.signatures[sig.name] = sig
        return sig

    def coerce(self, v):
        if isinstance(v, A.Name):
            v = A.Call(v.name, v.span, None, v.span)
        if isinstance(v, A.Str) and self.what != "data source":
            v = A.Call(v.value, v.span, None, v.span)
        if not isinstance(v, A.Call):
            raise ArgError("E401", f"expected a {self.what}, got {kind_of(v)} `{show(v)}`",
                           "one of: " + ", ".join(f"`{n}`" for n in self.signatures), v.span)
        sig = self.signatures.get(v.name)
        if sig is None:
            raise ArgError("E310", f"unknown {self.what} `{v.name}`",
                           did_you_mean(v.name, list(self.signatures))
                           or "one of: " + ", ".join(f"`{n}`" for n in self.signatures), v.name_span)
        try:
            values = sig.bind(v, f"`{v.name}`")
        except ArgErrors as errs:
            raise errs.errors[0] if len(errs.errors) == 1 else errs
        return {"kind": v.name, **values}

    def value(self, kind: str, **args) -> dict:
        """A normalised value with every default filled in: ``OPTIMIZERS.value("adam")``."""
        sig = self.signatures[kind]
        return {"kind": kind, **{p.name: args.get(p.name, p.default) for p in sig.params}}

    def defaults(self) -> dict[str, dict]:
        """``{kind: {param: default}}`` in declaration order; ``None`` marks a required parameter."""
        return {name: {p.name: None if p.default is REQUIRED else p.default for p in sig.params}
                for name, sig in self.signatures.items()}

    def validate(self, kind: str, args: dict | None = None, code: str = "E741") -> dict:
        """``{param: value}`` of a call made from Python (an engine's API: ``make_optimizer("sgd",
        ..., {"momentum": 0.9})``), checked exactly as the compiler checks ``sgd(momentum=0.9)``
        and normalised (every parameter present; numbers as the declared int or float).

        The values are written as the AST values a spec would hold (:func:`python_value`) and bound
        by :meth:`Signature.bind`, so ranges and cross-parameter checks are the declaration's.
        Raises :class:`NncError` ``code`` (E741: an invalid runtime parameter) with every problem.
        """
        from ..errors import Diagnostic, NncError

        sig = self.signatures.get(kind) if isinstance(kind, str) else None
        if sig is None:
            raise NncError.single(code, f"unknown {self.what} `{kind}`",
                                  hint=did_you_mean(str(kind), list(self.signatures))
                                  or "choose one of " + ", ".join(self.signatures))
        what = f"{self.what} `{kind}`"
        call = A.Call(kind, _NOWHERE, [A.KwArg(str(k), _NOWHERE, python_value(v), _NOWHERE)
                                       for k, v in (args or {}).items()], _NOWHERE)
        try:
            out = sig.bind(call, what)
        except ArgErrors as errs:
            raise NncError([Diagnostic(code, e.message if f"`{kind}`" in e.message else f"{what}: {e.message}",
                                       None, e.hint) for e in errs.errors]) from None
        return out

    def vocabulary(self):
        out = {name: self.what for name in self.signatures}  # `init=zeros`, `loss = mae`
        for sig in self.signatures.values():  # and what their arguments take: dataset(iris)
            for p in sig.params:
                out.update({n: w for n, w in p.type.vocabulary().items() if n not in out})
        return out

    def json_schema(self):
        return {"oneOf": [{"type": "object", "properties": {"kind": {"const": name},
                                                             **sig.json_schema()["properties"]},
                           "required": ["kind"]} for name, sig in self.signatures.items()]}


# ----------------------------------------------------------------------------------------------
# calls made from Python (an engine's API), checked by the same signatures

_NOWHERE = SourceSpan()


@record
class _Opaque:
    """A Python value nnspec has no syntax for (``None``, an object): every type refuses it."""

    value: Any
    span: SourceSpan = _NOWHERE

    def __str__(self) -> str:
        return repr(self.value)


def python_value(v: Any) -> A.Value:
    """A Python value as the AST value that writes it in a spec: ``0.9`` -> ``Num(0.9, "0.9")``,
    ``True`` -> ``Bool``, ``"x"`` -> ``Str``, a list -> ``List``, ``{"kind": "adam", "lr": 0.1}`` ->
    ``Call``. NumPy scalars count as their Python value; a value nnspec cannot write is kept as
    it is, for every type to refuse."""
    if hasattr(v, "item") and getattr(v, "shape", None) == ():
        v = v.item()  # a NumPy scalar or 0-d array, without importing NumPy
    if isinstance(v, bool):
        return A.Bool(v, _NOWHERE)
    if isinstance(v, int):
        return A.Num(v, str(v), _NOWHERE)
    if isinstance(v, float):
        return A.Num(v, repr(v), _NOWHERE)
    if isinstance(v, str):
        import json  # only for values given from Python (the API), never by `nnc check`
        return A.Str(v, json.dumps(v), _NOWHERE)
    if isinstance(v, (list, tuple)):
        return A.List([python_value(x) for x in v], _NOWHERE)
    if isinstance(v, dict) and isinstance(v.get("kind"), str):
        return A.Call(v["kind"], _NOWHERE, [A.KwArg(str(k), _NOWHERE, python_value(x), _NOWHERE)
                                            for k, x in v.items() if k != "kind"], _NOWHERE)
    return _Opaque(v)  # type: ignore[return-value]
