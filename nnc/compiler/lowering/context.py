"""The context every lowering pass shares: the diagnostics of the file (what is reported, what is
kept quiet because it would repeat an error already reported) and the constants (``let``, ``--set``).

It also holds the scopes and values the passes build on, and the small helpers on syntax trees.
"""
from __future__ import annotations

import copy
import operator

from ...errors import NO_SPAN, DiagnosticSink, SourceSpan, did_you_mean
from ...lang import ast as A
from ...lang.types import ArgError, ArgErrors, kind_of, show
from ...record import field, record, replace
from ..builtin_names import builtin_values, describe, example, is_builtin_value
from ..ops import OPS


_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
          "//": operator.floordiv, "%": operator.mod}


_LITERALS = (A.Num, A.Str, A.Bool)


def ir_span(s: SourceSpan | None) -> SourceSpan:
    return s or NO_SPAN


@record
class Value:
    """A named or implicit value in the dataflow: a node's output or a model input."""

    id: str
    shape: tuple[int, ...] | None   # None: poisoned by an earlier error
    dtype: str
    span: SourceSpan


@record
class Scope:
    """Names visible in a block: constants and values. ``repeat`` bodies get a child per pass."""

    parent: "Scope | None" = None
    consts: dict[str, A.Value] = field(default_factory=dict)
    values: dict[str, Value] = field(default_factory=dict)
    # constants whose definition was reported (refused, or a value naming nothing): their uses are
    # consequences of that error and are not reported again
    failed: set[str] = field(default_factory=set)

    def _lookup(self, table: str, name: str):
        s: Scope | None = self
        while s is not None:
            found = getattr(s, table).get(name)
            if found is not None:
                return found
            s = s.parent
        return None

    def const(self, name: str) -> A.Value | None:
        return self._lookup("consts", name)

    def value(self, name: str) -> Value | None:
        return self._lookup("values", name)

    def const_failed(self, name: str) -> bool:
        """Whether the constant ``name`` seen from here is one whose definition was an error."""
        s: Scope | None = self
        while s is not None:
            if name in s.failed:
                return True
            if name in s.consts:
                return False
            s = s.parent
        return False

    def all_names(self) -> list[str]:
        out: list[str] = []
        s: Scope | None = self
        while s is not None:
            out += list(s.consts) + list(s.values)
            s = s.parent
        return out


def _respan(v: A.Value, span: SourceSpan) -> A.Value:
    """A constant's value as seen at its use site (errors point where it is used)."""
    v = copy.deepcopy(v)
    if hasattr(v, "span"):
        v.span = span
    if isinstance(v, A.Call):
        v.name_span = span
    return v


class Context:
    """Diagnostics and constants, shared by every pass. Every piece of state is declared here."""

    def __init__(self, path: str | None, overrides: dict[str, A.Value] | None = None):
        # diagnostics and the file
        self.sink = DiagnosticSink(path)  # every error and warning of the file, raised once at the end
        self.path = path  # the spec's path; ``sink.path`` is switched to `<--set KEY>` while a --set value is read
        self.overrides: dict[str, A.Value] = dict(overrides or {})  # --set values not yet used, by key
        self.lets: dict[str, list[A.LetStmt]] = {}  # every `let` of the file by name, for "defined later"
        # what is not reported twice
        self.unresolved: dict[tuple, str] = {}  # spans of names that were not constants -> the name
        # (path, span) of places whose errors would only repeat one already reported: uses of a
        # constant whose definition failed, and the bad names inside that definition
        self.quiet: set[tuple] = set()
        self.refused: set[str] = set()  # value names refused (E305): their uses are not reported again
        self.defining: A.LetStmt | None = None  # the `let` whose value is being evaluated
        self.blocks: dict = {}  # the file's good block definitions by name (lowering.blocks.Block)

    # ------------------------------------------------------------------------------------------
    # diagnostics

    def err(self, code: str, message: str, span: SourceSpan | None, hint: str | None = None) -> None:
        if (self.sink.path, span_key(span)) in self.quiet:
            return  # a consequence of an error already reported at the definition of a constant
        self.sink.error(code, message, span, hint)

    def warn(self, code: str, message: str, span: SourceSpan | None, hint: str | None = None) -> None:
        self.sink.warning(code, message, span, hint)

    def hush(self, span: SourceSpan | None) -> None:
        self.quiet.add((self.sink.path, span_key(span)))

    def arg_errors(self, errors: list[ArgError], scope: Scope) -> None:
        for e in errors:
            name = self.unresolved.get(span_key(e.span))
            if name is not None and name not in scope.all_names() and (is_builtin_value(name) or name in OPS):
                # a built-in word given where it means nothing (`maxpool2d(2, padding=same)`): say what
                # the word is; hinting `let same = ...` would change what every `padding=same` means
                where = f"of {e.param}" if e.param else "here"
                if name in OPS:
                    hint = f"`{name}` is an op; it goes in a pipeline (`... -> {name}`), not a value {where}"
                else:
                    hint = f"`{name}` is {describe(name)}, not a value {where}"
                if e.hint and e.code != "E401":
                    hint += f"; {e.hint}"
                self.err(e.code, e.message.replace(f"got a name `{name}`", f"got `{name}`"), e.span, hint)
            elif e.code == "E401" and name is not None and "got a name" in e.message and scope.value(name) is not None:
                self.err("E401", e.message.replace(f"got a name `{name}`", f"got `{name}`, a value of the model"),
                         e.span, "a value flows through the model and is not a number; pass a number or a "
                         "constant (a block parameter given a value is a value in the body: a pipeline "
                         "source or a merge input)")
            elif e.code == "E401" and name is not None and "got a name" in e.message and e.hint is None:
                consts = [n for n in scope.all_names() if scope.const(n) is not None]
                self.err("E303", f"unknown constant `{name}`", e.span,
                         did_you_mean(name, consts) or "define it first with `let " + name + " = ...`")
            else:
                self.err(e.code, e.message, e.span, e.hint)

    # ------------------------------------------------------------------------------------------
    # constants

    def subst(self, v: A.Value, scope: Scope) -> A.Value:
        """Replace names of constants by their values, recursively (``v`` itself where nothing
        changes: a literal, or a call of literals)."""
        if type(v) in _LITERALS:
            return v
        if isinstance(v, A.Name):
            if scope.const_failed(v.name):
                self.hush(v.span)
            c = scope.const(v.name)
            if c is not None:
                return _respan(c, v.span)
            self.unresolved[span_key(v.span)] = v.name
            return v
        if isinstance(v, A.List):
            return A.List([self.subst(x, scope) for x in v.items], v.span)
        if isinstance(v, A.Call) and v.args is not None:
            args, changed = [], False
            for a in v.args:
                if isinstance(a, A.KwArg):
                    value = self.subst(a.value, scope)
                    if value is not a.value:
                        a, changed = replace(a, value=value), True
                else:
                    new = self.subst(a, scope)
                    a, changed = new, changed or new is not a
                args.append(a)
            return A.Call(v.name, v.name_span, args, v.span) if changed else v
        if isinstance(v, A.EXPRESSIONS):
            return self.evaluate(v, scope)
        return v

    # ------------------------------------------------------------------------------------------
    # constant expressions

    def evaluate(self, v: A.Value, scope: Scope) -> A.Value:
        """A constant expression's value, as a :class:`ast.Num` at the expression's span whose
        ``source`` is the expression as written. An operand that is not a number, a division by zero
        or ``//``/``%`` on a non-integer is reported here, at the operand or the expression; the
        expression itself is then returned (hushed: what receives it reports nothing more)."""
        if isinstance(v, A.Paren):
            operands = [self.subst(v.inner, scope)]
        elif isinstance(v, A.Neg):
            operands = [self.subst(v.operand, scope)]
        else:
            operands = [self.subst(v.left, scope), self.subst(v.right, scope)]
        numbers = [self.operand(x, v, scope) for x in operands]
        if any(n is None for n in numbers):
            self.hush(v.span)
            return v
        if isinstance(v, A.Paren):
            (result,) = numbers
        elif isinstance(v, A.Neg):
            result = -numbers[0]
        else:
            a, b = numbers
            if v.op in ("//", "%"):
                for x, side in ((a, v.left), (b, v.right)):
                    if not isinstance(x, int):
                        self.err("E408", f"`{v.op}` needs whole numbers, got `{show(side)}` = {x!r}", side.span,
                                 "use `/` for a float result, or make both sides whole numbers")
                        self.hush(v.span)
                        return v
            if v.op in ("/", "//", "%") and b == 0:
                self.err("E406", f"division by zero in `{show(v)}`", v.span,
                         f"the divisor `{show(v.right)}` is 0" if not isinstance(v.right, A.Num) or v.right.source
                         else "divide by a number other than 0")
                self.hush(v.span)
                return v
            result = _ARITH[v.op](a, b)
        text = str(result) if isinstance(result, int) else repr(float(result))
        return A.Num(result, text, v.span, show(v))

    def operand(self, x: A.Value, expr: A.Value, scope: Scope) -> int | float | None:
        """The number an operand stands for (an integer where it is one), or None after reporting."""
        if isinstance(x, A.Num):
            value = x.value
            if isinstance(value, float) and value.is_integer() and "." not in x.text and x.source is None \
                    and abs(value) < 2 ** 53:
                return int(value)  # `1e3` is the whole number 1000, as it is for an integer parameter
            return value
        if (self.sink.path, span_key(x.span)) in self.quiet or isinstance(x, A.EXPRESSIONS):
            return None  # already reported (a failed constant, an inner expression)
        if isinstance(x, A.Name):
            name = x.name
            if scope.value(name) is not None:
                self.err("E407", f"`{name}` is a value of the model, not a number", x.span,
                         "arithmetic works on numbers and constants (`let` and block parameters); values "
                         "flowing through the model are never arithmetic: use `add(a, b)` or `multiply(a, b)`")
            elif name in OPS or is_builtin_value(name):
                what = "an op" if name in OPS else describe(name)
                self.err("E407", f"`{name}` is {what}, not a number", x.span,
                         "arithmetic works on numbers and numeric constants")
            elif self.defining is not None:
                return None  # reported with the definition's other names (check_const_names)
            else:
                consts = [n for n in scope.all_names() if scope.const(n) is not None]
                others = [c for c in self.lets if c not in consts]
                self.err("E303", f"unknown constant `{name}`", x.span,
                         did_you_mean(name, consts) or did_you_mean(name, others)
                         or f"define it first with `let {name} = ...`")
            self.hush(x.span)
            return None
        self.err("E407", f"arithmetic needs numbers, got {kind_of(x)} `{show(x)}` in `{show(expr)}`", x.span,
                 "only numbers and numeric constants can be added, subtracted, multiplied and divided")
        self.hush(x.span)
        return None

    def define_const(self, stmt: A.LetStmt, scope: Scope) -> None:
        if stmt.name in OPS:
            self.err("E305", f"constant `{stmt.name}` has the name of an op", stmt.name_span,
                     "choose another name; op names are reserved")
            scope.failed.add(stmt.name)
            return
        if is_builtin_value(stmt.name):
            self.err("E314", f"constant `{stmt.name}` has the name of a built-in value: {describe(stmt.name)}",
                     stmt.name_span, f"choose another name; a constant `{stmt.name}` would change what "
                     f"`{example(stmt.name)}` means")
            scope.failed.add(stmt.name)
            return
        if stmt.name in scope.consts or scope.value(stmt.name) is not None:
            self.err("E304", f"`{stmt.name}` is already defined", stmt.name_span, "choose another name")
            return
        override = self.overrides.pop(stmt.name, None) if scope.parent is None else None
        if override is not None:
            self.sink.path = f"<--set {stmt.name}>"  # the value's positions are in the --set text
        self.defining = stmt
        value = self.subst(override if override is not None else stmt.value, scope)
        self.defining = None
        ok = self.check_const_names(stmt, value, scope) and not isinstance(value, A.EXPRESSIONS)
        self.sink.path = self.path
        scope.consts[stmt.name] = value
        if not ok:
            scope.failed.add(stmt.name)

    def check_const_names(self, stmt: A.LetStmt, value: A.Value, scope: Scope) -> bool:
        """Every name left in a constant's value (after substituting the constants defined before it)
        must be an op or a built-in value; anything else is reported here, at the definition, not
        where (or whether) the constant is used."""
        ok = True
        for n in names_in(value):
            if n.name in OPS or is_builtin_value(n.name):
                continue
            ok = False
            if (self.sink.path, span_key(n.span)) in self.quiet:
                continue  # a constant whose own definition was reported
            later = [s for s in self.lets.get(n.name, []) if (s.span.line, s.span.column) > (stmt.span.line,
                                                                                            stmt.span.column)]
            if n.name == stmt.name:
                self.err("E303", f"constant `{stmt.name}` is defined in terms of itself", n.span,
                         "give it a value: a number, a string, a list, or a constant defined before it")
            elif later and stmt.name in {m.name for m in names_in(later[0].value)}:
                self.err("E303", f"constants `{stmt.name}` and `{n.name}` are defined in terms of each other",
                         n.span, f"give one of them a value of its own (`let {n.name}` is at line "
                         f"{later[0].span.line})")
            elif later:
                self.err("E303", f"constant `{n.name}` is used before it is defined (at line {later[0].span.line})",
                         n.span, f"move `let {n.name} = ...` above this line")
            elif scope.value(n.name) is not None:
                self.err("E303", f"`{n.name}` is a value of the model, not a constant", n.span,
                         "a `let` holds a number, a string, a list, or the name of an op or a built-in value; "
                         f"use the value itself in a pipeline: `{n.name} -> ...`")
            else:
                consts = [c for c in scope.all_names() if scope.const(c) is not None]
                others = [c for c in self.lets if c not in consts and c != stmt.name]  # a typo of one defined later
                self.err("E303", f"unknown constant `{n.name}` in `let {stmt.name}`", n.span,
                         did_you_mean(n.name, consts) or did_you_mean(n.name, others)
                         or did_you_mean(n.name, list(OPS) + list(builtin_values()))
                         or "a constant can use numbers, strings, lists, ops, built-in values and the "
                         "constants defined before it")
            self.hush(n.span)
        return ok

    def coerce(self, type_, v: A.Value, scope: Scope, what: str = ""):
        param = {"input dimension": "an input dimension", "repeat count": "a repeat count"}.get(what, what)
        try:
            return type_.coerce(self.subst(v, scope))
        except ArgError as e:
            if what:
                e.message = f"{what}: {e.message}"
            e.param = e.param or param or None
            self.arg_errors([e], scope)
        except ArgErrors as es:
            for e in es.errors:
                e.param = e.param or param or None
            self.arg_errors(es.errors, scope)
        return None


def names_in(v: A.Value):
    """The names in a value (not the names of calls): ``[a, b]`` and ``adam(lr=base)`` hold names."""
    if isinstance(v, A.Name):
        yield v
    elif isinstance(v, A.List):
        for x in v.items:
            yield from names_in(x)
    elif isinstance(v, A.Call):
        for a in v.args or []:
            yield from names_in(a.value if isinstance(a, A.KwArg) else a)
    elif isinstance(v, A.BinOp):
        yield from names_in(v.left)
        yield from names_in(v.right)
    elif isinstance(v, A.Neg):
        yield from names_in(v.operand)
    elif isinstance(v, A.Paren):
        yield from names_in(v.inner)


def lets_in(items: list):
    """Every `let` statement of a file, at any depth (top level, model, blocks, `repeat` bodies)."""
    for it in items:
        if isinstance(it, A.LetStmt):
            yield it
        elif isinstance(it, (A.Model, A.BlockDef, A.Repeat)):
            yield from lets_in(it.body)


def span_key(span: SourceSpan | None) -> tuple:
    return (span.line, span.column, span.end_line, span.end_column) if span else ()


def numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
