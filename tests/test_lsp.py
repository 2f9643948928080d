"""``nnc lsp`` end to end: the server runs as its own process (``python -m nnc lsp``) and a real
client (pytest-lsp's, which checks every message against the protocol) talks to it over standard
input/output: diagnostics on open and after an edit, hover, inlay hints, completion, formatting,
definitions, symbols and quick fixes; a line with non-ASCII text before the positions; a huge file
and a binary one, after which the server still answers.

The features themselves are tested in process, over the corpus and the examples, in
test_lsp_analysis.py.
"""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

pytest_lsp = pytest.importorskip("pytest_lsp", reason="pytest-lsp is in the test extra: pip install -e '.[test]'")
from lsprotocol import types as T  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WAIT = 60  # seconds: a hang guard only, never a speed expectation

# one server for the module (each test opens documents of its own): it must serve them all in turn
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]


@pytest_lsp.fixture(scope="module",
                    config=ClientServerConfig(server_command=[sys.executable, "-m", "nnc", "lsp", "--debounce-ms", "20"]))
async def client(lsp_client: LanguageClient):
    # NOTE: pytest-lsp keeps the last diagnostics of each document; the test also needs the version
    # they are of (several quick edits: only the last one's count)
    lsp_client.diagnostic_versions = {}
    features = lsp_client.protocol.fm._features
    keep = features[T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS]

    def record(params: T.PublishDiagnosticsParams):
        keep(params)
        lsp_client.diagnostic_versions[params.uri] = params.version
    features[T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS] = record
    await lsp_client.initialize_session(T.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"), root_uri=ROOT.as_uri()))
    yield
    await lsp_client.shutdown_session()


def doc(name: str) -> T.TextDocumentIdentifier:
    return T.TextDocumentIdentifier(uri=(ROOT / "tests" / "lsp" / name).as_uri())


async def open_doc(client: LanguageClient, name: str, text: str, version: int = 1) -> str:
    uri = doc(name).uri
    client.text_document_did_open(T.DidOpenTextDocumentParams(T.TextDocumentItem(uri, "nnspec", version, text)))
    await diagnostics_of(client, uri, version)
    return uri


async def diagnostics_of(client: LanguageClient, uri: str, version: int) -> list[T.Diagnostic]:
    """The diagnostics published for ``version`` of ``uri`` (waiting for them)."""
    async def wait():
        while client.diagnostic_versions.get(uri) != version:
            await asyncio.sleep(0.01)
    await asyncio.wait_for(wait(), WAIT)
    return list(client.diagnostics[uri])


async def change(client: LanguageClient, uri: str, text: str, version: int) -> None:
    client.text_document_did_change(T.DidChangeTextDocumentParams(
        T.VersionedTextDocumentIdentifier(uri=uri, version=version),
        [T.TextDocumentContentChangeWholeDocument(text=text)]))


def position(text: str, needle: str, delta: int = 1) -> T.Position:
    """The protocol position (UTF-16 columns) of ``needle``'s first occurrence plus ``delta``."""
    i = text.index(needle) + delta
    line = text.count("\n", 0, i)
    start = text.rfind("\n", 0, i) + 1
    return T.Position(line, len(text[start:i].encode("utf-16-le")) // 2)


BAD = """model bad {
    input image: [1, 8, 8]
    conv2d(8, 3, padding=same) -> rellu
    dense(10)
}
"""
GOOD = BAD.replace("rellu", "relu").replace("    dense(10)", "    flatten\n    dense(10)")


async def test_diagnostics_on_open_and_after_each_edit(client: LanguageClient):
    uri = doc("bad.nnspec").uri
    client.text_document_did_open(T.DidOpenTextDocumentParams(T.TextDocumentItem(uri, "nnspec", 1, BAD)))
    (d,) = await diagnostics_of(client, uri, 1)
    assert d.code == "E301" and d.source == "nnc" and d.severity == T.DiagnosticSeverity.Error
    assert d.message == "unknown op or value `rellu`\nhint: did you mean `relu`?"
    assert d.range == T.Range(T.Position(2, 34), T.Position(2, 39))
    assert d.code_description.href.endswith("docs/errors.md#e301")

    await change(client, uri, BAD.replace("rellu", "relu"), 2)
    (d,) = await diagnostics_of(client, uri, 2)
    assert d.code == "E201" and d.range.start == T.Position(3, 4) and "hint: add `flatten` before it" in d.message

    # several quick edits: only the last version's diagnostics matter, and they come
    for v, text in ((3, BAD), (4, GOOD[:-3]), (5, GOOD)):
        await change(client, uri, text, v)
    assert await diagnostics_of(client, uri, 5) == []

    client.text_document_did_close(T.DidCloseTextDocumentParams(T.TextDocumentIdentifier(uri)))


async def test_hover_inlay_hints_definition_and_symbols(client: LanguageClient):
    text = (ROOT / "specs" / "resnet_small.nnspec").read_text(encoding="utf-8")
    uri = await open_doc(client, "resnet_small.nnspec", text)
    ident = T.TextDocumentIdentifier(uri)

    h = await client.text_document_hover_async(T.HoverParams(ident, position(text, "globalavgpool2d ->")))
    assert "**globalavgpool2d_1** → `[32]`" in h.contents.value
    h = await client.text_document_hover_async(T.HoverParams(ident, position(text, 'stage(4 * base')))
    assert "**stage3** → `[32, 8, 8]`" in h.contents.value and "c = 32" in h.contents.value
    h = await client.text_document_hover_async(T.HoverParams(ident, position(text, "classes = 4")))
    assert "let classes = 4" in h.contents.value

    hints = await client.text_document_inlay_hint_async(T.InlayHintParams(
        ident, T.Range(T.Position(0, 0), T.Position(len(text.splitlines()), 0))))
    labels = {(x.position.line, x.label) for x in hints}
    assert (text[:text.index("globalavgpool2d")].count("\n"), "[4]") in labels  # dense(classes) and softmax

    loc = await client.text_document_definition_async(T.DefinitionParams(ident, position(text, "basic(base)")))
    assert loc.range.start == position(text, "basic(c)", 0)

    syms = await client.text_document_document_symbol_async(T.DocumentSymbolParams(ident))
    assert [s.name for s in syms] == ["base", "classes", "basic", "down", "stage", "resnet_small", "train"]


async def test_completion_formatting_and_quick_fixes(client: LanguageClient):
    text = "model m {\n    input x: [1, 8, 8]\n    conv2d(4,  3)->dnse\n}\ntrain {\n    loss = cross_entropy\n    \n}\n"
    uri = await open_doc(client, "edit.nnspec", text)
    ident = T.TextDocumentIdentifier(uri)

    got = await client.text_document_completion_async(T.CompletionParams(ident, position(text, "  3)", 1)))
    assert {"stride=", "padding=", "groups="} <= {i.label for i in got.items}
    got = await client.text_document_completion_async(T.CompletionParams(ident, position(text, "dnse", 0)))
    assert {"dense", "relu", "flatten"} <= {i.label for i in got.items}
    got = await client.text_document_completion_async(T.CompletionParams(
        ident, T.Position(text[:text.index("    \n}")].count("\n"), 4)))
    assert "optimizer" in {i.label for i in got.items} and "loss" not in {i.label for i in got.items}

    actions = await client.text_document_code_action_async(T.CodeActionParams(
        ident, T.Range(T.Position(2, 0), T.Position(2, 0)), T.CodeActionContext(diagnostics=[])))
    assert [a.title for a in actions] == ["Replace `dnse` with `dense`"]

    edits = await client.text_document_formatting_async(T.DocumentFormattingParams(
        ident, T.FormattingOptions(tab_size=4, insert_spaces=True)))
    assert "    conv2d(4, 3) -> dnse\n" in edits[0].new_text


async def test_non_ascii_text_before_the_positions(client: LanguageClient):
    # é is one UTF-16 unit, 😀 two: every position after them on the line is in UTF-16 units
    text = ('# modèle à deux 😀 étages\nmodel m {\n    input x: [4]\n'
            '    dense(4, name="é😀") -> reluu  # ça\n    q = x -> dense(2)\n}\n')
    uri = await open_doc(client, "unicode.nnspec", text)
    diags = await diagnostics_of(client, uri, 1)
    by_code = {d.code: d for d in diags}
    assert by_code["E401"].range.start == position(text, '"é', 0)
    assert by_code["E301"].range == T.Range(position(text, "reluu", 0), position(text, "reluu", 5))
    assert position(text, "reluu", 0).character == len('    dense(4, name="é😀") -> ') + 1  # one more than code points
    h = await client.text_document_hover_async(T.HoverParams(T.TextDocumentIdentifier(uri), position(text, "dense(2)")))
    assert "**dense_2** → `[2]`" in h.contents.value


async def test_a_huge_or_binary_file_does_not_stop_the_server(client: LanguageClient):
    huge = "# " + "x" * (2 << 20) + "\nmodel m {\n}\n"
    uri = await open_doc(client, "huge.nnspec", huge)
    assert [d.code for d in client.diagnostics[uri]] == ["E107"]
    ident = T.TextDocumentIdentifier(uri)
    assert await client.text_document_hover_async(T.HoverParams(ident, T.Position(1, 2))) is None
    got = await client.text_document_completion_async(T.CompletionParams(ident, T.Position(1, 2)))
    assert list(got.items) == []

    binary = bytes(range(256)).decode("latin-1") * 64
    uri = await open_doc(client, "binary.nnspec", binary)
    assert [d.code for d in client.diagnostics[uri]] == ["E001"]
    ident = T.TextDocumentIdentifier(uri)
    await client.text_document_document_symbol_async(T.DocumentSymbolParams(ident))
    await client.text_document_inlay_hint_async(T.InlayHintParams(ident, T.Range(T.Position(0, 0), T.Position(99, 0))))
    await client.text_document_completion_async(T.CompletionParams(ident, T.Position(0, 50)))

    # and it still serves an ordinary file
    uri = await open_doc(client, "after.nnspec", BAD)
    assert [d.code for d in client.diagnostics[uri]] == ["E301"]


async def test_a_syntax_error_keeps_hover_and_symbols_before_it(client: LanguageClient):
    text = "let width = 8\nmodel m {\n    input x: [4]\n    h = dense(width) -> relu\n    dense(2 ->\n}\n"
    uri = await open_doc(client, "syntax.nnspec", text)
    assert [d.code for d in client.diagnostics[uri]] == ["E102"]
    ident = T.TextDocumentIdentifier(uri)
    h = await client.text_document_hover_async(T.HoverParams(ident, position(text, "dense(width)")))
    assert "**dense_1** → `[8]`" in h.contents.value
    syms = await client.text_document_document_symbol_async(T.DocumentSymbolParams(ident))
    assert [s.name for s in syms] == ["width", "m"] and [c.name for c in syms[1].children] == ["x", "h"]
