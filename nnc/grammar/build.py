"""lark's LALR(1) tables for ``nnspec.lark`` as plain data, for :mod:`.lalr` to cache and drive.

Run only when the cache has no tables for the grammar (lark is imported here only).
"""
from __future__ import annotations

from .lalr import FORMAT, _line_safe


def build(grammar: str) -> dict:
    """The tables, from lark (imported here only)."""
    from . import get_parser
    parser = get_parser()[0]
    frontend = parser.parser
    table = frontend.parser.parser.parse_table
    root = frontend.lexer.root_lexer
    scanner = root.scanner
    if len(scanner._mres) != 1 or root.callback:
        raise RuntimeError("the grammar's lexer needs lark's own scanner")  # pragma: no cover
    rules = []
    index = {}
    for rule in parser.rules:
        index[rule] = len(rules)
        opts = rule.options
        empty = opts.empty_indices
        if empty:
            s = "".join(str(int(b)) for b in empty)
            nones = [len(ones) for ones in s.split("0")]
        else:
            nones = [0] * (len(rule.expansion) + 1)
        include, pending = [], 0
        for i, sym in enumerate(rule.expansion):
            pending += nones[i]
            if not (sym.is_term and sym.filter_out):
                include.append((i, bool((not sym.is_term) and sym.name.startswith("_")), pending))
                pending = 0
        pending += nones[len(rule.expansion)]
        simple = (not empty and len(include) == len(rule.expansion)
                  and not any(expand for _, expand, _ in include))
        # NOTE: str(): lark names are often its Token class, which marshal refuses
        name = str(rule.alias or opts.template_source or rule.origin.name)
        rules.append((str(rule.origin.name), len(rule.expansion), name, bool(opts.expand1 and not rule.alias),
                      name.startswith("_"), simple, tuple(include), pending))
    states = []
    from lark.parsers.lalr_analysis import Shift
    for s in range(len(table.states)):
        row = {}
        for sym, (action, arg) in table.states[s].items():
            row[str(sym)] = int(arg) if action is Shift else -1 - index[arg]
        states.append(row)
    mre = scanner._mres[0]
    data = {"format": FORMAT, "grammar": grammar, "pattern": str(mre.pattern), "flags": int(mre.flags),
            "ignore": sorted(map(str, root.ignore_types)), "newline": sorted(map(str, root.newline_types)),
            "states": states, "start": int(table.start_states["start"]), "end": int(table.end_states["start"]),
            "rules": rules}
    data["line_safe"] = _line_safe(data)  # (worked out once, with the tables)
    return data
