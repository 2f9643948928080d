"""Golden diagnostics: every spec in tests/errors/ is checked and its whole rendered text output is
compared with the .expected file next to it (cairo-lang's parser_errors_test pattern).

    NNC_UPDATE_GOLDEN=1 pytest tests/test_errors_golden.py     # rewrite the .expected files

Read the diff before committing: a golden file is a promise about what users see. Cases listed in
KNOWN_BUGS hold the output the compiler *should* print (hand-written, never rewritten by the update
mode) and are strict xfails: when a fix makes one pass, the test fails until it is removed from the
list (then run the update once and review the diff).

Besides the text, every diagnostic is checked for its shape (code, 1-based span, message), syntax
errors for leaking no lark token names, an unexpected end of file for pointing at the end, and the
corpus as a whole for covering every compile-time code documented in docs/errors.md.

Cases named ``w*.nnspec`` hold warnings only: ``nnc check`` prints them and exits 0. Every other case
fails (exit 1); it may hold warnings besides its errors.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from nnc.cli import main
from nnc.errors import NncError
from nnc.compiler.lower import check_source

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "errors"
CASES = sorted(CORPUS.glob("*.nnspec"))
DOC = ROOT / "docs" / "errors.md"
UPDATE = bool(os.environ.get("NNC_UPDATE_GOLDEN"))

# name -> what is wrong today. The .expected file holds the intended output.
KNOWN_BUGS: dict[str, str] = {}

# lark's names for terminals; a user must never see them
LARK_WORDS = re.compile(r"\b(?:RPAR|LPAR|RSQB|LSQB|RBRACE|LBRACE|COMMA|COLON|EQUAL|MORETHAN|LESSTHAN)\b"
                        r"|__ANON|\$END|_NL\b|Token\(")


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _cases(bugs=KNOWN_BUGS):
    for p in CASES:
        marks = []
        if p.stem in bugs:
            marks.append(pytest.mark.xfail(reason=KNOWN_BUGS[p.stem], strict=True))
        yield pytest.param(p, id=p.stem, marks=marks)


def test_corpus_is_large_enough():
    assert len(CASES) >= 45
    missing = [p.name for p in CASES if not p.with_suffix(".expected").exists()]
    assert not missing or UPDATE, f"no .expected file for {missing}; run with NNC_UPDATE_GOLDEN=1"
    orphans = [p.name for p in CORPUS.glob("*.expected") if not p.with_suffix(".nnspec").exists()]
    assert not orphans, f".expected files without a spec: {orphans}"
    unknown = set(KNOWN_BUGS) - {p.stem for p in CASES}
    assert not unknown, f"KNOWN_BUGS names no corpus file: {unknown}"


def _warnings_only(spec: Path) -> bool:
    return spec.stem.startswith("w")


@pytest.mark.parametrize("spec", list(_cases()))
def test_golden_output(spec: Path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = main(["check", _rel(spec)])
    captured = capsys.readouterr()
    if _warnings_only(spec):
        assert code == 0, f"{spec.name} holds warnings only: check must pass"
        assert "warning[" in captured.out and "error[" not in captured.out
    else:
        assert code == 1, f"{spec.name} should fail to check"
    assert "Traceback" not in captured.out + captured.err
    expected_file = spec.with_suffix(".expected")
    if UPDATE and spec.stem not in KNOWN_BUGS:
        expected_file.write_text(captured.out, encoding="utf-8")
        return
    expected = expected_file.read_text(encoding="utf-8")
    assert captured.out == expected


def _diagnostics(spec: Path):
    data = spec.read_bytes()
    if _warnings_only(spec):
        warnings: list = []
        check_source(data, _rel(spec), warnings=warnings)
        return data, warnings
    with pytest.raises(NncError) as info:
        check_source(data, _rel(spec))
    return data, info.value.diagnostics


@pytest.mark.parametrize("spec", list(_cases({})))
def test_every_diagnostic_is_well_formed(spec: Path):
    data, diags = _diagnostics(spec)
    assert diags
    lines = data.decode("utf-8", "replace").split("\n")
    for d in diags:
        assert re.fullmatch(r"[EW]\d{3}", d.code), d
        assert d.severity == ("warning" if d.code.startswith("W") else "error"), d
        assert d.message and d.message.strip(), d
        assert d.hint is None or d.hint.strip(), d
        assert d.path == _rel(spec)
        assert d.span is not None, f"{d.code} has no location: {d.message}"
        s = d.span
        assert s.line >= 1 and s.column >= 1, d
        assert (s.end_line, s.end_column) >= (s.line, s.column), d
        assert s.line <= max(1, len(lines)), d
        as_json = d.as_dict()
        assert set(as_json) == {"path", "line", "column", "end_line", "end_column", "severity", "code",
                                "message", "hint", "notes"}
        for note in as_json["notes"]:  # a block use that expanded the body the diagnostic is in
            assert set(note) == {"message", "line", "column", "end_line", "end_column"}
            assert 1 <= note["line"] <= len(lines) and note["message"].startswith("expanded from `"), note


@pytest.mark.parametrize("spec", list(_cases({})))
def test_messages_speak_the_users_words(spec: Path):
    _, diags = _diagnostics(spec)
    for d in diags:
        for text in (d.message, d.hint or ""):
            assert not LARK_WORDS.search(text), f"lark token name in {d.code}: {text!r}"


def test_unexpected_end_of_file_points_at_the_end():
    seen = 0
    for spec in CASES:
        data, diags = _diagnostics(spec)
        for d in diags:
            if d.code != "E103":
                continue
            seen += 1
            lines = data.decode("utf-8").split("\n")
            last = max(i for i, text in enumerate(lines) if text.strip())
            assert d.span.line == last + 1, spec.name
            assert d.span.column == len(lines[last].rstrip()) + 1, spec.name
    assert seen >= 3


def test_files_with_several_mistakes_report_them_all():
    for stem, at_least in (("multi_errors_model_and_train", 6), ("multi_errors_one_per_statement", 4),
                           ("e310_unknown_choices", 7), ("e402_out_of_range", 8)):
        _, diags = _diagnostics(CORPUS / f"{stem}.nnspec")
        assert len(diags) >= at_least, stem
        lines = [d.span.line for d in diags]
        assert lines == sorted(lines), "diagnostics are reported in source order"


def test_an_error_in_a_repeat_body_is_reported_once():
    _, diags = _diagnostics(CORPUS / "multi_errors_inside_repeat.nnspec")
    assert [d.code for d in diags] == ["E303"]


def documented_codes() -> dict[str, str]:
    """``{code: stage}`` from the index table of docs/errors.md (``| E201 | title | compile |``)."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*\[?`?([EW]\d{3})`?\]?(?:\([^)]*\))?\s*\|[^|]*\|\s*`?([a-z-]+)`?\s*\|", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def test_corpus_covers_every_compile_time_code():
    documented = documented_codes()
    compile_time = {c for c, stage in documented.items() if stage in ("compile", "syntax")}
    assert len(compile_time) >= 45, "the index table of docs/errors.md did not parse"
    in_corpus = set()
    for spec in CASES:
        expected = spec.with_suffix(".expected")
        if expected.exists():
            in_corpus |= set(re.findall(r"(?:error|warning)\[([EW]\d{3})\]", expected.read_text(encoding="utf-8")))
    missing = sorted(compile_time - in_corpus)
    assert not missing, f"no golden case for {missing}"


def test_every_code_the_compiler_emits_is_documented():
    documented = documented_codes()
    used = set()
    for py in (ROOT / "nnc").rglob("*.py"):
        used |= set(re.findall(r'"([EW]\d{3})"', py.read_text(encoding="utf-8")))
    missing = sorted(used - set(documented))
    assert not missing, f"codes used in nnc/ but not in docs/errors.md: {missing}"
