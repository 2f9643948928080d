"""Source text -> syntax tree (:mod:`nnc.lang.ast`), with syntax errors in the user's words.

Every input, however broken (binary, not UTF-8, deeply nested, megabytes long), either parses or
raises :class:`NncError`; nothing else escapes.
"""
from __future__ import annotations

import contextlib
import copy
import gc
import re

from ..grammar import KEYWORDS, get_parser, lex, literal_types
from ..lang import ast as A
from ..errors import Diagnostic, NncError, SourceSpan

__all__ = ["KEYWORDS", "parse", "parse_prefix", "parse_value", "read_value", "decode_source"]
MAX_NESTING = 64
MAX_SOURCE_BYTES = 1 << 20  # 1 MiB: parsing costs about 4 s per MiB, and no real spec comes close

# lark terminal name -> what the user sees in "expected ..." lists
_TERMINAL_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "CMP": "a comparison (<=, <, ==, >=, >)",
    "$END": "the end of the file",
}


def _describe_terminal(name: str, parser) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    for term in parser.terminals:
        if term.name == name and term.pattern.type == "str":
            return f"`{term.pattern.value}`"
    return name.lower()


def _describe_token(tok: Token) -> str:
    if tok.type == "$END":
        return "the end of the file"
    if tok.type == "NAME":
        return f"name `{tok}`"
    if tok.type == "NUMBER":
        return f"number `{tok}`"
    if tok.type == "STRING":
        return f"string {tok}"
    if str(tok) in KEYWORDS:
        return f"keyword `{tok}`"
    return f"`{tok}`"


def _number(text: str) -> int | float:
    if text.isdigit() and text.isascii():
        return int(text) if len(text) < 4000 else _number_slow(text)
    return _number_slow(text)


def _number_slow(text: str) -> int | float:
    clean = text.replace("_", "")
    if re.fullmatch(r"-?[0-9]+", clean):
        try:
            return int(clean)
        except ValueError:  # more digits than Python converts: an out-of-range value, not a crash
            return float(clean)
    return float(clean)


def _span_maker():
    """``(line, column, end_line, end_column) -> SourceSpan``: the span's fields written into a new
    instance's ``__dict__`` (the frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__``, a third of the parser's time on a large spec); the class's own
    constructor wherever that would not give an equal span of the same fields."""
    new = object.__new__

    def make(line, column, end_line, end_column):
        s = new(SourceSpan)
        d = s.__dict__
        d["line"] = line
        d["column"] = column
        d["end_line"] = end_line
        d["end_column"] = end_column
        return s

    try:
        probe, ref = make(3, 5, 4, 7), SourceSpan(3, 5, 4, 7)
        if probe == ref and hash(probe) == hash(ref) and vars(probe) == vars(ref):
            return make
    except (AttributeError, TypeError):  # pragma: no cover - a SourceSpan with __slots__
        pass
    return SourceSpan  # pragma: no cover


_span = _span_maker()


def _sp(ext) -> SourceSpan:
    """The span of a rule's extent ``(_, line, column, end_line, end_column)`` (None: nothing)."""
    if ext is None:
        return SourceSpan()
    _, line, column, end_line, end_column = ext
    return _span(line, column, end_line, end_column)


def _ts(tok) -> SourceSpan:
    """The span of a token ``(text, line, column, end_line, end_column)``."""
    _, line, column, end_line, end_column = tok
    return _span(line, column, end_line, end_column)


# ----------------------------------------------------------------------------------------------
# the syntax tree's builders: one per grammar rule, shared by the fast path (nnc.grammar.lalr) and
# lark's tree (ToAst). ``c`` are the rule's children as lark shapes them, tokens as
# ``(text, line, column, end_line, end_column)``; ``x`` is the rule's extent (for its span), the
# same tuple with no text.

def _v_number(c, x):
    tok = c[0]
    return A.Num(_number(tok[0]), tok[0], _ts(tok))


def _v_string(c, x):
    tok = c[0]
    return A.Str(tok[0][1:-1], tok[0], _ts(tok))


def _v_list(c, x):
    return A.List([v for v in c if v is not None], _sp(x))


def _call(c, x):
    name, args = c
    return A.Call(name[0], _ts(name), args or [], _sp(x))


def _binop(op):
    def build(c, x):
        return A.BinOp(op, c[0], c[1], _sp(x))
    return build


def _e_neg(c, x):
    (operand,) = c
    if type(operand) is A.Num and operand.source is None and not operand.text.startswith("-"):
        # `-2` is a negative number, as before expressions existed (its text keeps the sign)
        return A.Num(-operand.value, "-" + operand.text, _sp(x))
    return A.Neg(operand, _sp(x))


def _input_decl(c, x):
    name, dtype, *dims = c
    dt = A.Name(dtype[0], _ts(dtype)) if dtype is not None else None
    return A.InputDecl(name[0], _ts(name), dt, dims, _sp(x))


def _block_def(c, x):
    name, *rest = c
    params = [v for v in rest if isinstance(v, A.Param)]
    body = [v for v in rest if v is not None and not isinstance(v, A.Param)]
    return A.BlockDef(name[0], _ts(name), params, body, _sp(x))


def _first(c, x):
    return c[0]


BUILDERS = {
    "v_number": _v_number,
    "v_string": _v_string,
    "v_true": lambda c, x: A.Bool(True, _sp(x)),
    "v_false": lambda c, x: A.Bool(False, _sp(x)),
    "v_name": lambda c, x: A.Name(c[0][0], _ts(c[0])),
    "v_list": _v_list,
    "v_call": _call,
    "e_add": _binop("+"), "e_sub": _binop("-"), "e_mul": _binop("*"), "e_div": _binop("/"),
    "e_floordiv": _binop("//"), "e_mod": _binop("%"),
    "e_neg": _e_neg,
    "e_paren": lambda c, x: A.Paren(c[0], _sp(x)),
    "arglist": lambda c, x: list(c),
    "arg_pos": _first,
    "arg_kw": lambda c, x: A.KwArg(c[0][0], _ts(c[0]), c[1], _sp(x)),
    "stage_bare": lambda c, x: A.Call(c[0][0], _ts(c[0]), None, _ts(c[0])),
    "stage_call": _call,
    "pipeline": lambda c, x: A.Pipeline(list(c), _sp(x)),
    "binding": lambda c, x: A.Binding(c[0][0], _ts(c[0]), c[1], _sp(x)),
    "dim": _first,
    "count": _first,
    "input_decl": _input_decl,
    "output_decl": lambda c, x: A.OutputDecl([A.Name(t[0], _ts(t)) for t in c], _sp(x)),
    "quantity_name": lambda c, x: A.Quantity("name", c[0][0], None, _sp(x)),
    "quantity_output": lambda c, x: A.Quantity("output", "output", None, _sp(x)),
    "quantity_call": lambda c, x: A.Quantity("call", c[0][0], A.Name(c[1][0], _ts(c[1])), _sp(x)),
    "assert_stmt": lambda c, x: A.AssertStmt(c[0], c[1][0], c[2], _sp(x)),
    "repeat": lambda c, x: A.Repeat(c[0], c[1:], _sp(x)),
    "let_stmt": lambda c, x: A.LetStmt(c[0][0], _ts(c[0]), c[1], _sp(x)),
    "param": lambda c, x: A.Param(c[0][0], _ts(c[0]), c[1], _sp(x)),
    "block_def": _block_def,
    "model": lambda c, x: A.Model(c[0][0], _ts(c[0]), c[1:], _sp(x)),
    "entry": lambda c, x: A.Entry(c[0][0], _ts(c[0]), c[1], _sp(x)),
    "train": lambda c, x: A.Train(list(c), _sp(x)),
    "start": lambda c, x: A.File(list(c)),
    "<passes>": ("arg_pos", "dim", "count"),  # (for the fast path: these return their one child,
    "<lists>": ("arglist",),  # these their children as a list)
}


def _to_ast():
    """lark's Transformer over the same builders (for the trees of ``nnc fmt`` and ``read_value``)."""
    from lark import Token, Transformer, v_args

    def adapt(build):
        def method(self, meta, c):
            c = [(str(v), v.line, v.column, v.end_line, v.end_column) if isinstance(v, Token) else v
                 for v in c]
            ext = None if getattr(meta, "empty", True) else (
                None, meta.line, meta.column or 1, meta.end_line or meta.line, meta.end_column or (meta.column or 1) + 1)
            return build(c, ext)
        return method

    def __default__(self, data, children, meta):  # pragma: no cover - grammar/AST drift guard
        raise NotImplementedError(f"no AST builder for grammar rule {data!r}")

    body = {name: adapt(build) for name, build in BUILDERS.items() if not name.startswith("<")}
    body["__default__"] = __default__
    body["__doc__"] = "One method per grammar rule; a rule without a method fails loudly (``__default__``)."
    return v_args(meta=True)(type("ToAst", (Transformer,), body))()


_TO_AST_CACHE: list = []


def _transform(tree) -> A.File:
    if not _TO_AST_CACHE:
        _TO_AST_CACHE.append(_to_ast())
    return _TO_AST_CACHE[0].transform(tree)


# ----------------------------------------------------------------------------------------------
# input sanitising

def decode_source(data: bytes, path: str | None) -> str:
    """UTF-8 text of a spec file, or an E001 diagnostic at the first bad byte."""
    if b"\x00" in data[:8192]:
        raise NncError.single("E001", "this is not a text file (it contains NUL bytes)",
                              hint="nnspec files are UTF-8 text; check the path", path=path,
                              span=SourceSpan(1, 1, 1, 2))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[:exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise NncError.single("E001", f"the file is not valid UTF-8 (byte 0x{data[exc.start]:02x})",
                              hint="save the file as UTF-8", path=path,
                              span=SourceSpan(line, column, line, column + 1)) from None
    return text[1:] if text.startswith("\ufeff") else text


_BRACKETS = re.compile(r"[\[\](){}]|#[^\n]*|\"[^\"\n]*\"|'[^'\n]*'")


def _check_nesting(text: str, path: str | None) -> None:
    """Refuse absurd nesting before the (recursive) tree transformer sees it."""
    depth = 0
    for m in _BRACKETS.finditer(text):
        ch = m.group()
        if ch in "([{":
            depth += 1
            if depth > MAX_NESTING:
                line = text.count("\n", 0, m.start()) + 1
                col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
                raise NncError.single(
                    "E106", f"brackets are nested more than {MAX_NESTING} deep",
                    hint="no nnspec construct needs this much nesting; check for a runaway bracket",
                    span=SourceSpan(line, col, line, col + 1), path=path)
        elif ch in ")]}":
            depth = max(0, depth - 1)


# ----------------------------------------------------------------------------------------------
# syntax errors

def _end_span(text: str) -> SourceSpan:
    lines = text.split("\n")
    # point at the last non-blank line's end, where the missing text belongs
    idx = len(lines) - 1
    while idx > 0 and not lines[idx].strip():
        idx -= 1
    col = len(lines[idx].rstrip()) + 1
    return SourceSpan(idx + 1, col, idx + 1, col + 1)


_OPERATORS = {"`+`", "`-`", "`*`", "`/`", "`//`", "`%`"}


def _expected_words(expected, parser) -> list[str]:
    words = sorted({_describe_terminal(e, parser) for e in expected})
    # NOTE: after a number or a name, an arithmetic operator could always follow; listing them would
    # bury what the user most likely left out (`,`, `]`, `)`)
    rest = [w for w in words if w not in _OPERATORS]
    return rest if rest and len(rest) < len(words) and "`(`" not in rest else words


def _before(text: str, tok: Token) -> str:
    """The source text before ``tok``, without trailing comments and white space."""
    start = getattr(tok, "start_pos", None)
    head = text[:start] if start is not None else ""
    return re.sub(r"#[^\n]*", "", head).rstrip()


def _hint_for(token: Token | None, expected: set[str], text: str) -> str | None:
    arrow = literal_types()["->"]
    if token is not None and str(token) == "-" and arrow in expected:
        return "a pipeline uses `->` between stages"
    if token is not None and str(token) in ("train", "model") and "RBRACE" in expected:
        return f"the `{token}` block goes after the model block's closing `}}`"
    if token is not None and str(token) == "=" and "CMP" in expected:
        return "compare with `==` (or `<=`, `<`, `>=`, `>`); `=` binds a name"
    if token is not None and token.type != "$END" and expected == {"NAME"} and _before(text, token).endswith("->"):
        return "the pipeline ends with `->`; add a stage after it or remove the `->`"
    if token is not None and str(token) in KEYWORDS and "NAME" in expected:
        return f"`{token}` is a reserved word and cannot be used as a name; choose another name"
    if token is not None and token.type == "$END":
        if "RBRACE" in expected:
            return "a block is not closed: add `}`"
        if "RPAR" in expected:
            return "a call is not closed: add `)`"
        if "RSQB" in expected:
            return "a list is not closed: add `]`"
        return "the file ends in the middle of a statement"
    if "RPAR" in expected and "COMMA" in expected:
        return "separate arguments with `,` and close the call with `)`"
    if "RSQB" in expected and "COMMA" in expected:
        return "separate list items with `,` and close the list with `]`"
    if expected == {"COLON"}:
        return "write an input as `input NAME: [dims]`"
    if expected == {"EQUAL"}:
        return "write `NAME = value`"
    if token is not None and token.type == "NUMBER" and "NAME" in expected:
        return "a statement starts with a name or a keyword; numbers go inside `op(...)`"
    if token is not None and str(token) == "=" and "NAME" not in expected:
        return "`=` binds a name: write `NAME = pipeline`, or `key=value` inside `(...)`"
    if token is not None and token.type == "NAME" and "__ANON_0" in expected:
        return None
    return None


def _syntax_error(exc, text: str, parser, path: str | None) -> NncError:
    """``exc``, lark's ``UnexpectedInput``, in the user's words."""
    from lark import Token
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken
    if isinstance(exc, UnexpectedCharacters):
        ch = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        line, col = exc.line, exc.column
        if ch in "\"'":
            return NncError.single("E104", "this string is not closed before the end of the line",
                                   hint=f"add the closing {ch}", path=path,
                                   span=SourceSpan(line, col, line, col + 1))
        shown = ch if ch.isprintable() else f"U+{ord(ch):04X}" if ch else "end of input"
        hint = None
        if ch == "-":
            hint = "a pipeline uses `->` between stages"
        elif ch and ch in "→⟶➔➜⇒":
            hint = "write the arrow as `->`"
        elif ch and ch in "“”‘’":
            hint = "use plain ASCII quotes: \" or '"
        elif ch == "\\":
            hint = "statements may span lines without a continuation character; remove the `\\`"
        elif ch == ";":
            hint = "statements need no separator; remove the `;`"
        elif not ch.isascii():
            hint = "names are ASCII letters, digits and `_`; non-ASCII text may only appear in strings and comments"
        return NncError.single("E101", f"unexpected character `{shown}`", hint=hint, path=path,
                               span=SourceSpan(line, col, line, col + 1))
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        expected = set(getattr(exc, "expected", None) or getattr(exc, "accepts", None) or ())
        tok = Token("$END", "")
        words = _expected_words(expected, parser)
        msg = "unexpected end of file"
        if words:
            msg += f"; expected {', '.join(words[:8] + (['...'] if len(words) > 8 else []))}"
        return NncError.single("E103", msg, hint=_hint_for(tok, expected, text), path=path,
                               span=_end_span(text))
    assert isinstance(exc, UnexpectedToken)
    tok = exc.token
    expected = set(exc.accepts or exc.expected or ())
    prev = re.search(r"([A-Za-z_][A-Za-z0-9_]*)$", _before(text, tok))
    if str(tok) == "=" and prev and prev.group(1) in KEYWORDS:
        # `output = dense(3)`: the mistake is the reserved word, not the `=` after it
        word = prev.group(1)
        head = _before(text, tok)
        line = head.count("\n") + 1
        col = len(head) - (head.rfind("\n") + 1) - len(word) + 1
        return NncError.single("E102", f"unexpected keyword `{word}`", path=path,
                               hint=f"`{word}` is a reserved word and cannot be used as a name; choose another name",
                               span=SourceSpan(line, col, line, col + len(word)))
    start = getattr(tok, "start_pos", None)
    if str(tok) == ">" and start and text[start - 1] == "-":
        # NOTE: where an expression may go on, the contextual lexer reads `->` as `-` then `>`
        return NncError.single("E102", "unexpected `->` after a value", path=path,
                               hint="`->` joins the stages of a pipeline in a model or block; "
                               "here one value goes", span=SourceSpan(tok.line, tok.column - 1, tok.line,
                                                                      tok.column + 1))
    words = _expected_words(expected, parser)
    msg = f"unexpected {_describe_token(tok)}"
    if words:
        if len(words) > 8:
            words = words[:8] + ["..."]
        msg += f"; expected {', '.join(words)}"
    span = SourceSpan(tok.line, tok.column, tok.end_line or tok.line,
                      tok.end_column or tok.column + max(1, len(str(tok))))
    return NncError.single("E102", msg, hint=_hint_for(tok, expected, text), path=path, span=span)


# ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector: building big trees of small objects otherwise triggers
    collections whose cost grows with the tree (quadratic overall on megabyte inputs)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse(source: str | bytes, path: str | None = None, *, comments: bool = False) -> A.File:
    """Parse nnspec source into an :class:`ast.File`. Raises :class:`NncError` on any problem."""
    _check_size(source, path)
    text = decode_source(source, path) if isinstance(source, bytes) else source
    _check_nesting(text, path)
    if not comments:
        from ..grammar.lalr import FAILED, run
        with gc_paused():
            result = run(text, BUILDERS)
        if result is not FAILED:
            return result
    # lark's own parser: for the comments, and wherever the fast path leaves the answer to it
    from lark.exceptions import UnexpectedInput
    parser, collected = get_parser(comments)
    collected.clear()
    with gc_paused():
        try:
            tree = parser.parse(text)
        except UnexpectedInput as exc:
            raise _syntax_error(exc, text, parser, path) from None
        except RecursionError:  # pragma: no cover - guarded by _check_nesting
            raise NncError.single("E106", "the file is nested too deeply to parse", path=path) from None
        result = _transform(tree)
    if comments:
        result.comments = [(t.line, t.column, str(t)) for t in collected]
    return result


def parse_prefix(text: str) -> A.File | None:
    """The syntax tree of what parses before the first syntax error of ``text``, for editors.

    :func:`parse` reports the error; this keeps what came before it. The text is fed through the
    parser's own lexer up to the first token (or character) the parser cannot take. The brackets
    still open there are closed (``)``, ``]``, ``}``) and the file is ended; where that cannot
    complete the tree (the error is in the middle of a statement: ``let x =``), the unfinished
    construct is dropped, one symbol of the parser's stack at a time (LALR panic mode), until it can.
    So the tree ends with the last whole statement before the error. The closing tokens stand at the
    end of the text: a block left open spans the rest of the file.

    Returns None when nothing can be completed (or the text is too large or too deeply nested to
    parse at all); never raises.
    """
    try:
        _check_size(text, None)
        _check_nesting(text, None)
    except NncError:
        return None
    from lark import Token
    from lark.exceptions import UnexpectedInput
    parser = get_parser()[0]
    types = literal_types()
    closers = (types[")"], types["]"], types["}"])
    lines = text.split("\n")
    line, column = len(lines), len(lines[-1]) + 1
    end = Token("$END", "", len(text), line, column, line, column, len(text))
    with gc_paused():
        ip = parser.parse_interactive(text)
        try:
            for tok in ip.lexer_thread.lex(ip.parser_state):
                ip.feed_token(tok)
        except (UnexpectedInput, RecursionError):
            pass
        state = ip.parser_state
        try:
            while len(state.state_stack) > 1:
                plan = _closing(ip, closers)
                if plan is not None:
                    for closer in plan:
                        ip.feed_token(Token.new_borrow_pos(closer, "", end))
                    return _transform(ip.feed_token(end))
                state.state_stack.pop()  # drop the unfinished construct's last symbol
                state.value_stack.pop()
            return _transform(ip.feed_token(end)) if "$END" in ip.accepts() else None
        except Exception:  # noqa: BLE001 - an editor's best effort: no tree rather than a crash
            return None


def _closing(ip, closers: tuple[str, ...]) -> list[str] | None:
    """The closing brackets that let the parser ``ip`` accept the end of the file, or None.

    Worked out on a copy without the tree builders: the real parser's trees are never touched (lark
    extends a repetition's list in place, so a shared tree would change)."""
    from lark import Token
    conf = copy.copy(ip.parser_state.parse_conf)
    conf.callbacks = {}
    sim = ip.copy(deepcopy_values=False)
    sim.parser_state.parse_conf = conf
    plan: list[str] = []
    for _ in range(MAX_NESTING + 2):
        accepts = sim.accepts()
        if "$END" in accepts:
            return plan
        closer = next((c for c in closers if c in accepts), None)
        if closer is None:
            return None
        sim.feed_token(Token(closer, ""))
        plan.append(closer)
    return None


def _check_size(source, path: str | None) -> None:
    if len(source) > MAX_SOURCE_BYTES:
        raise NncError.single(
            "E107", f"the file is {len(source):,} bytes; nnc reads spec files of at most 1 MiB ({MAX_SOURCE_BYTES:,} bytes)",
            hint="a spec this large is almost certainly generated by mistake (a 1,000-layer spec is about "
            "20 KiB); use `repeat` instead of copies", path=path, span=SourceSpan(1, 1, 1, 2))


def read_value(text: str, what: str = "value", *, words: bool = False) -> A.Value:
    """The grammar's ``value`` rule on ``text`` alone; spans are positions in ``text``.

    The tokens come from the grammar's lexer and are fed to the LALR parser after the tokens of
    ``let __value__ =`` (the one statement a value stands in), so no text is prepended and no span
    shifted. ``words=True`` reads keywords as plain names (the ``--data`` syntax, where a bare word
    is a string: ``target=output``). A syntax error raises lark's ``UnexpectedInput`` (for the
    caller to word; :func:`parse_value` words it as the compiler does); absurd sizes and nesting
    raise :class:`NncError` (E107, E106), and text after a complete value E102.
    """
    from lark import Token
    from lark.exceptions import UnexpectedInput, UnexpectedToken
    path = f"<{what}>"
    _check_size(text, path)
    _check_nesting(text, path)
    parser = get_parser()[0]
    types = literal_types()
    keywords = {types[k] for k in KEYWORDS}
    ip = parser.parse_interactive()

    def synthetic(word: str, kind: str) -> Token:
        return Token(kind, word, 0, 1, 1, 1, 1, 0)

    last = None
    with gc_paused():
        try:
            for tok in (synthetic("let", types["let"]), synthetic("__value__", "NAME"),
                        synthetic("=", types["="])):
                ip.feed_token(tok)
            for tok in lex(text):
                if tok.type in ("WS", "COMMENT"):
                    continue
                if words and tok.type in keywords:
                    tok = Token.new_borrow_pos("NAME", tok.value, tok)
                ip.feed_token(tok)
                last = tok
            end = Token.new_borrow_pos("$END", "", last) if last is not None else Token("$END", "", 0, 1, 1, 1, 1, 0)
            tree = ip.feed_token(end)
        except UnexpectedInput as exc:
            if isinstance(exc, UnexpectedToken) and exc.interactive_parser is None:
                exc.interactive_parser = ip  # as lark's own parse() does: `accepts` for the message
            raise
        except RecursionError:  # pragma: no cover - guarded by _check_nesting
            raise NncError.single("E106", "the value is nested too deeply to parse", path=path) from None
        file = _transform(tree)
    items = file.items
    if len(items) != 1 or not isinstance(items[0], A.LetStmt):
        raise NncError(Diagnostic("E102", f"`{text}` is not a single value", None,
                                  "use nnspec value syntax, e.g. 3, 0.1, \"x\", [1, 2] or adam(lr=0.01)",
                                  path))
    return items[0].value


def parse_value(text: str, what: str = "value") -> A.Value:
    """Parse a single nnspec value (used for ``--set KEY=VALUE``); spans are positions in ``text``."""
    from lark.exceptions import UnexpectedInput
    path = f"<{what}>"
    try:
        try:
            return read_value(text, what)
        except UnexpectedInput as exc:
            raise _syntax_error(exc, text, get_parser()[0], path) from None
    except NncError as err:
        err.sources[path] = text
        for d in err.diagnostics:
            if d.code == "E102" and "expected" in d.message:
                d.message = d.message.split(";")[0] + " after the value"
                d.hint = "give one nnspec value, e.g. 3, 0.1, \"x\", [1, 2] or adam(lr=0.01)"
        raise
