"""parse.py's lark side: what only lark's own parser does, loaded where it is needed (``nnc check``
of a good spec never loads it, nor lark).

- :func:`parse_with_lark`: the whole text through lark (``nnc fmt``'s comments, and every input the
  fast path leaves to lark: syntax errors come out of it in the user's words, :func:`_syntax_error`);
- :func:`parse_prefix`: the tree before the first syntax error (editors);
- :func:`read_value` / :func:`parse_value`: one value alone (``--set``, ``--data``);
- :func:`_transform`: lark's tree -> the syntax tree, by the builders of :mod:`.parse`.

:mod:`.parse` re-exports each of these under its old name.
"""
from __future__ import annotations

import copy
import re

from ..errors import Diagnostic, NncError, SourceSpan
from ..grammar import KEYWORDS, get_parser, lex, literal_types
from ..lang import ast as A
from .parse import BUILDERS, MAX_NESTING, _check_nesting, _check_size, gc_paused


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


def parse_with_lark(text: str, path: str | None, comments: bool) -> A.File:
    """:func:`.parse` by lark's own parser (with ``comments``: recording them for ``nnc fmt``)."""
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
