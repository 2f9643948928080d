"""The data-source syntax of the command line (``nnc train --data``, ``evaluate --data``,
``predict --input``): the grammar's ``value`` rule, as for ``--set`` values, with the command line's
conveniences, checked against the train block's data-source catalogue (``SOURCES``).

Forms: ``dataset("iris")``, ``csv("f.csv", target="y")``, ``npz("f.npz", x="x", y="y")``: a call of
a source of ``SOURCES``, positional arguments in its parameter order, then ``key=value``; strings in
single or double quotes; a bare word (``target=label``, even a keyword: ``target=output``) or a
number is taken as the string it spells. A bare path ending in ``.csv`` means ``csv(path)`` with
the last column as the target, ``.npz`` means ``npz(path)`` with keys ``x`` and ``y``; a bare
built-in name (``iris``) means ``dataset("iris")``. On the command line only a source's first
parameter (what to read) is required: ``csv("f.csv")`` takes the last column as the target.

Every mistake is E709 with a span into the text. Nothing here imports NumPy; lark is imported when
a call is parsed.
"""
from __future__ import annotations

from typing import Any

from ..lang import ast as A
from ..errors import NncError, SourceSpan
from .trainspec import BUILTIN_DATASETS, SOURCES
from ..vocab import TEXT_OPTIONS, text_option_problem
from ..errors import did_you_mean
from ..lang.types import REQUIRED, ArgError, Bool, Signature, Str, show

SYNTAX_HINT = ('write dataset("iris"), csv("data.csv", target="label"), npz("data.npz", x="x", '
               'y="y"), images("folder", size=[H, W]), or a path ending in .csv or .npz')


def join_hints(*hints: str | None) -> str | None:
    parts = [h for h in hints if h]
    return "; ".join(parts) if parts else None


def near(word: str, choices, quote: str = "`") -> str | None:
    """"did you mean `x`?" (or with ``quote="\\""``, "did you mean "x"?")."""
    hint = did_you_mean(word, [c for c in choices if isinstance(c, str)]) if isinstance(word, str) else None
    return hint.replace("`", quote) if hint and quote != "`" else hint


# ----------------------------------------------------------------------------------------------
# the catalogue, as the command line and the runtime read it

def signature(kind) -> Signature | None:
    return SOURCES.signatures.get(kind) if isinstance(kind, str) else None


def parameters(sig: Signature) -> tuple[str, ...]:
    return tuple(p.name for p in sig.params)


def required(sig: Signature) -> tuple[str, ...]:
    """What the runtime cannot do without: the first parameter (the data set or the file)."""
    return parameters(sig)[:1]


def with_defaults(sig: Signature, args: dict) -> dict:
    """``args`` with the catalogue's defaults filled in (npz's ``x="x"``, ``y="y"``); a parameter
    the catalogue requires but the runtime does not (csv's ``target``) stays absent."""
    out = dict(args)
    for p in sig.params:
        if sig.name == "csv" and p.name in TEXT_OPTIONS and out.get("text") is None:
            continue  # the options of a text column mean nothing without one
        if sig.name == "images" and p.name == "color":
            continue  # on the command line, the run's data.json (or the spec) says which color
        if p.default is not REQUIRED and p.default is not None:
            out.setdefault(p.name, p.default)
    return out


def unknown_kind_hint(kind) -> str | None:
    return near(kind, SOURCES.signatures) if isinstance(kind, str) else None


# ----------------------------------------------------------------------------------------------
# parsing

def error(message: str, text: str, span: SourceSpan, hint: str | None = SYNTAX_HINT) -> NncError:
    return NncError.single("E709", f"bad data source `{text}`: {message}", hint=hint, span=span)


def _offset_span(text: str, start: int, end: int | None = None) -> SourceSpan:
    """The span of ``text[start:end]`` (at least one character)."""
    end = max(start + 1, end if end is not None else start + 1)
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1
    end_line = text.count("\n", 0, end) + 1
    end_col = end - (text.rfind("\n", 0, end) + 1) + 1
    return SourceSpan(line, col, end_line, end_col)


def _call_name(text: str):
    """The name token of ``NAME (`` at the start of ``text`` (a source call rather than a path or a
    bare name), else None. Keywords count as names here, as everywhere in this syntax."""
    from lark.exceptions import UnexpectedInput

    from ..grammar import KEYWORDS, lex

    words = []
    try:
        for tok in lex(text):
            if tok.type not in ("WS", "COMMENT"):
                words.append(tok)
                if len(words) == 2:
                    break
    except UnexpectedInput:
        return None
    if len(words) == 2 and (words[0].type == "NAME" or words[0].value in KEYWORDS) and words[1].value == "(":
        return words[0]
    return None


def looks_like_call(text: str) -> bool:
    return _call_name(text) is not None


def _tokens(text: str) -> list:
    """The tokens of ``text`` but white space and comments; E709 where the grammar's lexer stops."""
    from lark.exceptions import UnexpectedCharacters

    from ..grammar import lex

    out = []
    try:
        for tok in lex(text):
            if tok.type not in ("WS", "COMMENT"):
                out.append(tok)
    except UnexpectedCharacters as exc:
        pos = exc.pos_in_stream
        if text[pos:pos + 1] in ("\"", "'"):
            raise error("unterminated string", text, _offset_span(text, pos, len(text))) from None
        raise error(f"unexpected {text[pos:pos + 1]!r}", text, _offset_span(text, pos)) from None
    return out


def _tok_span(tok) -> SourceSpan:
    return SourceSpan(tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + 1)


def parse_source(text: str) -> tuple[str, dict]:
    """Parse a ``--data`` value into ``(kind, args)`` for ``nnc.data.load_source``."""
    stripped = text.strip()
    if not stripped:
        raise error("empty", text, _offset_span(text, 0))
    lowered = stripped.lower()
    is_path = lowered.endswith((".csv", ".npz"))  # a path such as "runs(2)/x.csv" is not a call
    name = None if is_path else _call_name(text)
    if name is None:
        if lowered.endswith(".csv"):
            return "csv", {"path": stripped}
        if lowered.endswith(".npz"):
            return "npz", with_defaults(SOURCES.signatures["npz"], {"path": stripped})
        if stripped in BUILTIN_DATASETS:
            return "dataset", {"name": stripped}
        return _bare_error(text, stripped, near(stripped, BUILTIN_DATASETS, quote='"'))
    toks = _tokens(text)  # a bad character anywhere first, then the source's name, then the syntax
    sig = signature(name.value)
    if sig is None:
        raise error(f"unknown data source `{name.value}`", text, _tok_span(name),
                    join_hints(unknown_kind_hint(name.value), SYNTAX_HINT))
    return sig.name, _bind(sig, _read_call(text, toks), text)


def _read_call(text: str, toks: list) -> A.Call:
    from lark.exceptions import UnexpectedInput

    from .parse import read_value

    try:
        value = read_value(text, "--data", words=True)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text, toks) from None
    except NncError as err:  # E106 / E107: absurd nesting or size
        d = err.diagnostics[0]
        raise error(d.message, text, d.span or _offset_span(text, 0), d.hint) from None
    assert isinstance(value, A.Call) and value.args is not None  # _call_name: NAME "(" ...
    return value


def _syntax_error(exc, text: str, toks: list) -> NncError:
    tok = getattr(exc, "token", None)
    if tok is None:  # pragma: no cover - _tokens lexed the text already
        return error("unexpected text", text, _offset_span(text, getattr(exc, "pos_in_stream", 0) or 0))
    expected = set(exc.accepts or exc.expected or ())
    if tok.type == "$END":
        span = _offset_span(text, len(text))
        if len(toks) >= 2 and toks[-1].value == "=" and toks[-2].type == "NAME":
            return error(f"`{toks[-2].value}=` needs a value", text, span)
        if "RPAR" in expected:
            return error("missing `)`", text, span)
        if "RSQB" in expected:
            return error("missing `]`", text, span)
        return error("missing a value at the end", text, span)
    span = _tok_span(tok)
    if "$END" in expected:
        return error(f"unexpected {tok.value!r} after `)`", text, span)
    if "STRING" in expected:
        return error(f"expected a value, found {tok.value!r}", text, span)
    if {"RPAR", "COMMA"} <= expected:
        return error(f"expected `,` or `)`, found {tok.value!r}", text, span)
    return error(f"unexpected {tok.value!r}", text, span)


def _string(v: A.Value, key: str, text: str) -> str:
    if isinstance(v, A.Str):
        return v.value
    if isinstance(v, A.Name):  # a bare word, keywords included (read_value(words=True))
        return v.name
    if isinstance(v, A.Num):
        return v.text
    raise error(f"expected a string, found `{show(v)}`", text, v.span, f'write it in quotes, e.g. {key}="..."')


def _value(sig: Signature, key: str, v: A.Value, text: str):
    """A string parameter takes any bare word or number as the string it spells; the others (a
    text column's `vocab`, an image folder's `size`) are checked by their declared type."""
    p = sig.by_name[key]
    if isinstance(p.type, Str) or key == sig.params[0].name:  # what to read: a name or a path, checked on loading
        return _string(v, key, text)
    if isinstance(p.type, Bool) and isinstance(v, A.Name) and v.name in ("true", "false"):
        return v.name == "true"  # read as a bare word here (words=True), keywords included
    try:
        return p.type.coerce(v)
    except ArgError as err:
        raise error(f"`{key}`: {err.message}", text, err.span or v.span,
                    err.hint or f"usage: {sig.usage()}") from None


def _bind(sig: Signature, call: A.Call, text: str) -> dict:
    kind, params = sig.name, parameters(sig)
    args: dict[str, Any] = {}
    positional, seen_keyword = 0, False
    for a in call.args or []:
        if isinstance(a, A.KwArg):
            if a.name not in params:
                raise error(f"{kind}() has no parameter `{a.name}`", text, a.name_span,
                            join_hints(near(a.name, params), f"{kind}() takes " + ", ".join(params)))
            if a.name in args:
                raise error(f"`{a.name}` is given twice", text, a.name_span)
            args[a.name] = _value(sig, a.name, a.value, text)
            seen_keyword = True
            continue
        if seen_keyword:
            raise error("a positional argument follows a keyword argument", text, a.span)
        if positional >= len(params):
            raise error(f"{kind}() takes at most {len(params)} positional "
                        f"argument{'s' if len(params) > 1 else ''}", text, a.span,
                        f"{kind}() takes " + ", ".join(params))
        args[params[positional]] = _value(sig, params[positional], a, text)
        positional += 1
    for key in required(sig):
        if not args.get(key):
            raise error(f"{kind}() needs `{key}`", text, call.span, f"e.g. {example(kind)}")
    problem = option_problem(kind, args, set(args))
    if problem is not None:
        raise error(problem[0], text, call.span, problem[1])
    return with_defaults(sig, args)


def option_problem(kind: str, args: dict, given) -> tuple[str, str] | None:
    """(message, hint) when a source's options do not go together (a csv text column without its
    `vocab` and `length`, or their use without `text`), else None."""
    return text_option_problem(args, given) if kind == "csv" else None


def example(kind: str) -> str:
    return {"dataset": 'dataset("iris")', "csv": 'csv("data.csv", target="label")',
            "npz": 'npz("data.npz", x="x", y="y")',
            "images": 'images("photos", size=[64, 64], color=rgb)'}.get(kind) or SOURCES.signatures[kind].usage()


def _bare_error(text: str, stripped: str, hint: str | None):
    start = text.find(stripped)
    span = _offset_span(text, start, start + len(stripped))
    if stripped.lower().endswith(".npy"):
        hint = join_hints(hint, "a .npy file holds one array, but training and evaluation need x and y: save "
                                'both with np.savez("data.npz", x=x, y=y) and pass npz("data.npz", x="x", y="y")')
        raise error("a .npy file is not a data source", text, span, hint)
    raise error("not a data source", text, span, join_hints(hint, SYNTAX_HINT))
