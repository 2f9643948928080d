"""The nnspec grammar (``nnspec.lark``) and its LALR parser, built once and cached.

Building the LALR tables takes tens of milliseconds; lark's ``cache=`` option stores them in a
file keyed by the grammar's hash, so later processes (``nnc check`` in CI) load them instead.
"""
from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path

GRAMMAR_PATH = Path(__file__).with_name("nnspec.lark")


def _cache_file() -> str | bool:
    base = os.environ.get("NNC_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "nnc-cache")
    try:
        os.makedirs(base, exist_ok=True)
        probe = os.path.join(base, ".w")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError:
        return False  # read-only or missing temp dir: build the tables every time
    return os.path.join(base, "nnspec-lalr.cache")


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
        parser = Lark(GRAMMAR_PATH.read_text(encoding="utf-8"), cache=cache, **kwargs)
    except Exception:  # NOTE: a corrupt or foreign cache file must never stop nnc
        parser = Lark(GRAMMAR_PATH.read_text(encoding="utf-8"), **kwargs)
    return parser, collected
