"""The fast path of the parser: lark's LALR(1) tables for ``nnspec.lark``, driven without lark.

lark builds the tables (states, actions, rules, the lexer's terminals in its priority order) from
the grammar; :func:`tables` stores them as plain data (``marshal``) in the cache directory, keyed
by the grammar's text, so that ``nnc check`` loads them in about a millisecond and never imports
lark (``build.py`` makes them, with lark). :func:`run` is lark's shift/reduce loop over those tables,
fed by :func:`tokens`.

Two shortcuts, both exact (``tests/test_check_fast_paths.py`` pins them against the general way):
the text is lexed line by line where no token the parser sees can hold a newline (each distinct
line is matched once: generated specs repeat theirs thousands of times), and a chain of unit
reductions (``NUMBER`` up to an argument) is followed once per (state below, state, token).

It is a fast path only. It takes the token that lark's root lexer would take (the same regular
expression, built by lark from the grammar's terminals); where that token is not one the parser
state accepts (where lark's contextual lexer could have read the text differently), where no
terminal matches, and on every syntax error it gives up and returns :data:`FAILED`, and the caller
parses with lark itself, whose result or error is then the answer. So every diagnostic is lark's
and the trees agree with lark's wherever this path succeeds (``tests/test_fast_parser.py``).

The reductions build the caller's values directly, one ``builders[name](children, extent)`` per
rule, where ``children`` are shaped as lark's tree builder shapes them (anonymous tokens dropped,
``_rules`` inlined, ``None`` for a missing ``[optional]``, ``?rules`` with one child expanded) and
``extent`` is ``(_, line, column, end_line, end_column)`` of everything the rule matched, as lark's
``propagate_positions`` computes it (None for an empty match). A token is ``(text, line, column,
end_line, end_column)``: its own extent.
"""
from __future__ import annotations

import marshal
import os
import re

FORMAT = 2  # 2: line_safe
FAILED = object()  # run()'s answer when lark must decide


def _cache_dir() -> str:
    base = os.environ.get("NNC_CACHE_DIR")
    if base:
        return base
    # NOTE: tempfile.gettempdir() without importing tempfile (it pulls in random and hashlib)
    for name in ("TMPDIR", "TEMP", "TMP"):
        if os.environ.get(name):
            return os.path.join(os.environ[name], "nnc-cache")
    return os.path.join("/tmp" if os.name == "posix" else os.getcwd(), "nnc-cache")


_TABLES: dict | None = None


def tables() -> dict:
    """The tables (loaded once per process; built with lark and cached on the first use)."""
    global _TABLES
    if _TABLES is not None:
        return _TABLES
    from . import grammar_text
    grammar = grammar_text()
    import zlib
    path = os.path.join(_cache_dir(), f"nnspec-tables-{FORMAT}-{zlib.crc32(grammar.encode()):08x}.marshal")
    data = None
    try:
        with open(path, "rb") as fh:
            data = marshal.load(fh)
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("grammar") != grammar:
            data = None
    except Exception:  # NOTE: a missing, corrupt or foreign cache file: build the tables again
        data = None
    if data is None:
        from .build import build  # (lark, imported there only)
        data = build(grammar)
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(tmp, "wb") as fh:
                marshal.dump(data, fh)
            os.replace(tmp, path)  # NOTE: atomic: a concurrent reader sees the old file or the new one
        except (OSError, ValueError):  # a read-only cache directory: build them in every process
            try:
                os.remove(tmp)
            except OSError:
                pass
    data["regex"] = re.compile(data["pattern"], data["flags"])
    _TABLES = data
    return data


def _plan(rules: list, builders: dict) -> list:
    """Per rule ``(kind, lhs, size, fn, include, append_none)``; kind 0: a ``?rule`` or ``_rule`` of
    one kept child that passes it up unchanged (``?expr: term``), 1: ``_rule`` (a list to inline),
    2: a builder of the children as they are, 3: a builder of filtered children, 4: a rule of one
    child whose value is the list of it (``_statement: pipeline``)."""
    out = []
    passes = builders.get("<passes>", ())  # builders that return their one child
    lists = builders.get("<lists>", ())  # builders that return their children as a list
    for lhs, size, name, expand1, inline, simple, include, append_none in rules:
        one = simple and size == 1
        if one and (expand1 or name in passes):
            kind = 0
        elif one and (inline or name in lists):
            kind = 4
        elif inline:
            kind = 1
        else:
            kind = 2 if simple else 3
        fn = builders[name] if kind in (2, 3) else None
        out.append((kind, lhs, size, fn, simple, include, append_none, expand1))
    return out


def _line_safe(t: dict) -> bool:
    """Whether the text may be lexed line by line: no token the parser sees can hold a newline (only
    ignored white space spans lines), so each line's tokens are those of the whole text's lexer.
    Worked out from the tables' lexer (``pattern``, ``newline``, ``ignore``) once, by ``build``,
    which stores it as ``t["line_safe"]``."""
    # NOTE: the pattern of each terminal lark thinks may hold a newline: each negated class must
    # refuse a newline (`[^"\n]`), and what is left must not name one
    for name in set(t["newline"]) - set(t["ignore"]):
        m = re.search(r"\(\?P<%s>(.*?)\)(?:\|\(\?P<|$)" % re.escape(name), t["pattern"], re.S)
        if m is None:
            return False
        negated = re.findall(r"\[\^(?:\\.|[^\]])*\]", m.group(1))
        if any("\n" not in c and "\\n" not in c for c in negated):
            return False
        body = re.sub(r"\[\^(?:\\.|[^\]])*\]", "", m.group(1))
        if any(x in body for x in ("\n", "\\n", "\\s", "\\S", "\\W", "\\D", "[^", ".")):
            return False
    return True


def _lex_line(s: str, match, ignore) -> tuple | None:
    """The tokens of one line (no newline in it): ``(type, text, column, end_column)`` each,
    ignored ones left out; None where no terminal matches."""
    out = []
    pos, n = 0, len(s)
    while pos < n:
        m = match(s, pos)
        if m is None:
            return None
        end = m.end()
        typ = m.lastgroup
        if typ not in ignore:
            out.append((typ, m.group(), pos + 1, end + 1))
        pos = end
    return tuple(out)


def tokens(text: str, t: dict) -> list | None:
    """``(type, token)`` for every token the parser sees, in order, then ``("$END", None)``; None
    where the lexer finds no terminal. A token is ``(text, line, column, end_line, end_column)``.

    Line by line where that is exact (``t["line_safe"]``, :func:`_line_safe`): each distinct line is
    matched once (a generated spec repeats its lines thousands of times)."""
    match = t["regex"].match
    ignore = frozenset(t["ignore"])
    out: list = []
    push = out.append
    if t["line_safe"]:
        seen: dict = {}
        get = seen.get
        line = 0
        for s in text.split("\n"):
            line += 1
            toks = get(s)
            if toks is None:
                toks = seen[s] = _lex_line(s, match, ignore)
                if toks is None:
                    return None
            for typ, val, col, end in toks:
                push((typ, (val, line, col, line, end)))
        push(("$END", None))
        return out
    newline = frozenset(t["newline"])  # a grammar whose tokens may span lines: the whole text at once
    n = len(text)
    pos, line, line_start = 0, 1, 0
    while pos < n:
        m = match(text, pos)
        if m is None:
            return None
        typ = m.lastgroup
        val = m.group()
        if typ not in ignore or typ in newline:
            col = pos - line_start + 1
            k = val.count("\n") if typ in newline else 0
            if k:
                end_line = line + k
                line_start = pos + val.rindex("\n") + 1
                if typ not in ignore:
                    push((typ, (val, line, col, end_line, pos + len(val) - line_start + 1)))
                line = end_line
            elif typ not in ignore:
                push((typ, (val, line, col, line, col + len(val))))
        pos += len(val)
    push(("$END", None))
    return out


def _chain(states: list, plan: list, below: int, state: int, typ: str) -> tuple[int, int]:
    """Where the unit reductions (plan kinds 0 and 4) that ``typ`` makes from ``state`` (above
    ``below``) end: ``(the top state then, how many times the value was wrapped in a list)``."""
    wraps = 0
    while True:
        a = states[state].get(typ)
        if a is None or a >= 0:
            return state, wraps
        step = plan[~a]
        if step[0] == 4:
            wraps += 1
        elif step[0] != 0:
            return state, wraps
        state = states[below][step[1]]


def run(text: str, builders: dict):
    """Parse ``text``; the start rule's value, or :data:`FAILED` where lark must decide."""
    t = tables()
    states = t["states"]
    key = id(builders)
    plan = t.get(key)
    if plan is None:
        plan = t[key] = _plan(t["rules"], builders)
    chains = t.get((key, "chains"))
    if chains is None:
        chains = t[key, "chains"] = {}
    stream = tokens(text, t)
    if stream is None:
        return FAILED
    end_state = t["end"]
    state = t["start"]
    stack = [state]
    vals: list = []
    exts: list = []
    push_state, push_val, push_ext = stack.append, vals.append, exts.append
    for typ, tok in stream:
        row = states[state]
        while True:
            a = row.get(typ)
            if a is None:
                return FAILED
            if a >= 0:
                if tok is None:  # pragma: no cover - lark never shifts the end
                    return FAILED
                state = a
                push_state(a)
                push_val(tok)
                push_ext(tok)  # a token is its own extent
                break
            kind, lhs, size, fn, simple, include, append_none, expand1 = plan[~a]
            if kind == 0 or kind == 4:
                if tok is not None:
                    # a chain of unit reductions (`NUMBER` up to an argument: atom, factor, term,
                    # expr, value, arg, arglist) only replaces the top state and wraps the value in
                    # lists: its end, by the state below, the top state and the token, is worked out once
                    below = stack[-2]
                    hit = chains.get((below, state, typ))
                    if hit is None:
                        hit = chains[below, state, typ] = _chain(states, plan, below, state, typ)
                    state, wraps = hit
                    stack[-1] = state
                    if wraps:
                        value = vals[-1]
                        for _ in range(wraps):
                            value = [value]
                        vals[-1] = value
                    row = states[state]
                    continue
                # on the end: one unit reduction at a time (kind 4: the value is the list of the
                # child; kind 0: the child itself)
                if kind == 4:
                    vals[-1] = [vals[-1]]
                state = stack[-1] = states[stack[-2]][lhs]
                row = states[state]
                if state == end_state:
                    return vals[-1]
                continue
            if size == 1:
                popped = [vals.pop()]
                ext = exts.pop()
                stack.pop()
            elif size:
                popped = vals[-size:]
                pexts = exts[-size:]
                del vals[-size:], exts[-size:], stack[-size:]
                first, last = pexts[0], pexts[-1]
                if first is None or last is None:  # an empty first or last child: the next one in
                    first = last = None
                    for e in pexts:
                        if e is not None:
                            first = e
                            break
                    for e in reversed(pexts):
                        if e is not None:
                            last = e
                            break
                ext = None if first is None else (None, first[1], first[2], last[3], last[4])
            else:
                popped, ext = [], None
            if simple:
                children = popped
            else:
                children = []
                for i, expand, nones in include:
                    if nones:
                        children += [None] * nones
                    if expand:
                        if children:
                            children += popped[i]
                        else:  # left recursion (`__model_star_1`): grow the list in place
                            children = popped[i]
                    else:
                        children.append(popped[i])
                if append_none:
                    children += [None] * append_none
            if kind == 1:
                value = children
            elif expand1 and len(children) == 1:
                value = children[0]
            else:
                value = fn(children, ext)
            state = states[stack[-1]][lhs]
            push_state(state)
            push_val(value)
            push_ext(ext)
            row = states[state]
            if tok is None and state == end_state:
                return vals[-1]
    return FAILED  # pragma: no cover - the end is always accepted or refused above
