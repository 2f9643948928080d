"""The nnspec grammar (``nnspec.lark``), its LALR parser (built once and cached) and its lexer.

Building the LALR tables takes tens of milliseconds; lark's ``cache=`` option stores them in a
file keyed by the grammar's hash, so later processes (``nnc check`` in CI) load them instead.

The grammar is the one description of the language's tokens: the parser (``compiler/parse.py``),
the formatter (``compiler/format.py``, through :func:`lex`) and the ``--data`` source syntax
(``compiler/datasource.py``) all read text through it, and :data:`KEYWORDS` is read from it.
"""
from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

GRAMMAR_PATH = Path(__file__).with_name("nnspec.lark")


@lru_cache(maxsize=None)
def grammar_text() -> str:
    return GRAMMAR_PATH.read_text(encoding="utf-8")


def _keywords(text: str) -> tuple[str, ...]:
    """The reserved words: every word written as a literal in a rule (``"model"``), in order."""
    rules = "\n".join(line.split("//")[0] for line in text.splitlines())
    return tuple(dict.fromkeys(re.findall(r'"([A-Za-z_][A-Za-z0-9_]*)"', rules)))


# NOTE: the NAME terminal must refuse exactly these words (the contextual lexer would otherwise
# take `output` for a name wherever a name may stand); tests/test_one_lexer.py checks that it does.
KEYWORDS: tuple[str, ...] = _keywords(grammar_text())


def _cache_file() -> str | bool:
    import tempfile
    base = os.environ.get("NNC_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "nnc-cache")
    try:
        os.makedirs(base, exist_ok=True)
        probe = os.path.join(base, ".w")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError:
        return False  # read-only or missing temp dir: build the tables every time
    # NOTE: one file per grammar (and lark version): two nnc versions on one machine must not
    # overwrite each other's tables on every run
    import hashlib
    import lark
    key = hashlib.sha256((grammar_text() + lark.__version__).encode()).hexdigest()[:16]
    return os.path.join(base, f"nnspec-lalr-{key}.cache")


@lru_cache(maxsize=None)
def get_parser(comments: bool = False):
    """The LALR parser. With ``comments=True`` it also records comments (for ``nnc fmt``).

    Returns ``(parser, comment_list)``: the list is cleared and refilled on every parse.
    """
    from lark import Lark

    collected: list = []
    callbacks = {"COMMENT": collected.append} if comments else {}
    cache = _cache_file()
    kwargs = dict(parser="lalr", propagate_positions=True, maybe_placeholders=True,
                  lexer_callbacks=callbacks)
    try:
        parser = Lark(grammar_text(), cache=cache, **kwargs)
    except Exception:  # NOTE: a corrupt or foreign cache file must never stop nnc
        parser = Lark(grammar_text(), **kwargs)
    return parser, collected


def lex(text: str):
    """Every token of ``text`` in order, white space (``WS``) and comments (``COMMENT``) included:
    the grammar's own terminals, from lark's lexer. Raises lark's ``UnexpectedCharacters`` where no
    terminal matches (lazily: the tokens before it come first)."""
    return get_parser()[0].lex(text, dont_ignore=True)


@lru_cache(maxsize=None)
def literal_types() -> dict[str, str]:
    """Each literal of the grammar (``"let"``, ``"("``, ``"->"``) -> the terminal lark named it."""
    return {t.pattern.value: t.name for t in get_parser()[0].terminals if t.pattern.type == "str"}
