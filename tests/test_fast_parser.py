"""The fast path of the parser (nnc.grammar.lalr) against lark's own parser and tree.

The fast path drives lark's LALR tables without lark; wherever it returns a syntax tree, that tree
must be the one lark's parser and ToAst build (every node, every span), and where it gives up, lark
decides. `nnc check` of a good spec must not import lark at all.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnc.compiler import parse as P
from nnc.compiler.ops import OPS
from nnc.grammar import get_parser, lalr

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted((ROOT / "specs").glob("**/*.nnspec")) + sorted((ROOT / "tests").glob("**/*.nnspec"))


def lark_tree(text: str):
    """lark's answer: the syntax tree, or None for a syntax error."""
    from lark.exceptions import UnexpectedInput
    try:
        return P._transform(get_parser()[0].parse(text))
    except UnexpectedInput:
        return None


def agree(text: str) -> bool:
    """Whether the fast path took ``text`` (else it left it to lark); fails where they differ."""
    fast = lalr.run(text, P.BUILDERS)
    slow = lark_tree(text)
    if fast is lalr.FAILED:
        return False
    assert slow is not None, "the fast path accepted what lark refuses"
    assert fast == slow
    return True


def test_every_spec_and_golden_input_parses_as_lark_parses_it():
    taken = [agree(f.read_text(encoding="utf-8", errors="replace")) for f in FILES]
    assert sum(taken) > len(FILES) // 2  # the good specs, at least, take the fast path


def test_spans_of_every_construct():
    text = ('let a = -(2 + 3) * 4 // 1 % 2 - -x\nlet s = [true, false, "q", f(1, k=[])]\n'
            "block b(c, d = 2,) {\n  h = dense(c, bias=false) -> relu\n  output h\n}\n"
            "model m {\n  input x: int64 [a, 3,]\n  input y: [2]\n  repeat 2 { b(1) }\n"
            "  z = add(x, y) -> b\n  assert params <= 10\n  assert output == [2]\n"
            "  assert shape(z) == [2]\n  output z, x\n}\ntrain { epochs = 3\n data = csv('a', target=\"y\") }\n")
    assert agree(text)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(list("{}()[],=->:#\"' \n\t.0123456789_abcdemxyz+*/%<>")
                                + ["model", "input", "output", "let", "repeat", "block", "assert", "train",
                                   "true", "false", "->", "//", "==", "<=", "m { input x: [2] "]
                                + list(OPS)[:12]), max_size=60).map("".join))
def test_token_soup_agrees_with_lark(source: str):
    agree(source)


def test_check_of_a_good_spec_imports_no_lark(tmp_path):
    code = ("import sys; from nnc.compiler.lower import check_source; "
            f"check_source(open({str(ROOT / 'specs' / 'digits_cnn.nnspec')!r}).read()); "
            "print('lark' in sys.modules)")
    env = {**os.environ, "NNC_CACHE_DIR": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr  # builds the tables with lark, and caches them
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert again.stdout.strip() == "False", again.stderr


@pytest.mark.parametrize("junk", [b"", b"\x00garbage", b"\x80\x04not marshal"])
def test_a_corrupt_table_cache_is_rebuilt(tmp_path, junk):
    code = ("import sys; from nnc.compiler.parse import parse; "
            "print(len(parse('model m { input x: [2]\\n dense(3) }').items))")
    env = {**os.environ, "NNC_CACHE_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=120, check=True)
    (cache,) = tmp_path.glob("nnspec-tables-*")
    cache.write_bytes(junk)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr
