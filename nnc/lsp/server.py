"""The pygls server: documents, the debounced analysis, and one handler per protocol feature.

Documents are synchronised whole (``TextDocumentSyncKind.Full``): a spec is small (the compiler
reads at most 1 MiB), and the server's lines are then exactly the compiler's. Each version is
analysed once (:func:`~.analysis.analyze`) and the result cached; diagnostics are published when a
document opens and, after every change, once the edits pause for ``debounce`` seconds (a request
such as hover or inlay hints analyses the newest text at once if it has not been yet).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from lsprotocol import types as T
from pygls.lsp.server import LanguageServer

from ..version import __version__
from . import completion, features
from .analysis import Analysis, analyze
from .positions import TextIndex

DEFAULT_DEBOUNCE = 0.15  # seconds of quiet after an edit before its diagnostics are computed
ERRORS_URL = "https://github.com/nnc-dev/nnc/blob/main/docs/errors.md"

log = logging.getLogger("nnc.lsp")


def uri_path(uri: str) -> str:
    """The file system path of a ``file:`` URI (the URI itself for other schemes)."""
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri


@dataclass
class Document:
    uri: str
    text: str
    version: int
    analysis: Analysis | None = None    # of ``text``, once analysed
    index: TextIndex | None = None
    pending: asyncio.TimerHandle | None = None


class NncLanguageServer(LanguageServer):
    def __init__(self, debounce: float = DEFAULT_DEBOUNCE):
        super().__init__("nnc", __version__, text_document_sync_kind=T.TextDocumentSyncKind.Full)
        self.debounce = debounce
        self.errors_url = ERRORS_URL
        self.docs: dict[str, Document] = {}

    # -- documents -------------------------------------------------------------------------------
    @property
    def encoding(self) -> str:
        try:
            enc = self.workspace.position_encoding
        except Exception:  # noqa: BLE001 - before initialisation
            enc = None
        return {"utf-8": "utf-8", "utf-32": "utf-32"}.get(str(enc.value if hasattr(enc, "value") else enc), "utf-16")

    def analysed(self, uri: str) -> Document | None:
        doc = self.docs.get(uri)
        if doc is None:
            return None
        if doc.analysis is None:
            doc.analysis = analyze(doc.text, uri_path(uri))
            doc.index = TextIndex(doc.text, self.encoding)
            if doc.analysis.internal_error:
                self.window_log_message(T.LogMessageParams(
                    T.MessageType.Error, f"nnc {__version__}: internal error while checking {uri}: "
                    f"{doc.analysis.internal_error} (a bug in nnc, please report it)"))
        return doc

    def publish(self, uri: str) -> None:
        doc = self.analysed(uri)
        if doc is None:
            return
        diags = features.diagnostics(doc.analysis, doc.index, uri, self.errors_url)
        self.text_document_publish_diagnostics(T.PublishDiagnosticsParams(uri, diags, doc.version))

    def changed(self, uri: str, text: str, version: int, *, now: bool) -> None:
        doc = self.docs.get(uri)
        if doc is not None and doc.pending is not None:
            doc.pending.cancel()
        doc = self.docs[uri] = Document(uri, text, version)
        if now or self.debounce <= 0:
            self.publish(uri)
            return
        loop = asyncio.get_running_loop()
        doc.pending = loop.call_later(self.debounce, self._publish_if_current, uri, version)

    def _publish_if_current(self, uri: str, version: int) -> None:
        doc = self.docs.get(uri)
        if doc is not None and doc.version == version:
            doc.pending = None
            try:
                self.publish(uri)
            except Exception as exc:  # noqa: BLE001 - a timer callback must never kill the loop
                log.exception("publishing diagnostics failed")
                self.window_log_message(T.LogMessageParams(T.MessageType.Error, f"nnc: {exc}"))


def build_server(debounce: float = DEFAULT_DEBOUNCE) -> NncLanguageServer:
    server = NncLanguageServer(debounce)

    @server.feature(T.INITIALIZE)
    def initialize(ls: NncLanguageServer, params: T.InitializeParams):
        options = params.initialization_options if isinstance(params.initialization_options, dict) else {}
        if isinstance(options.get("errorsUrl"), str):
            ls.errors_url = options["errorsUrl"]
        if isinstance(options.get("debounceMs"), (int, float)):
            ls.debounce = max(0.0, options["debounceMs"] / 1000)

    @server.feature(T.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: NncLanguageServer, params: T.DidOpenTextDocumentParams):
        d = params.text_document
        ls.changed(d.uri, d.text, d.version, now=True)

    @server.feature(T.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: NncLanguageServer, params: T.DidChangeTextDocumentParams):
        text = None
        for change in params.content_changes:  # full sync: the last change holds the whole text
            text = change.text
        if text is not None:
            ls.changed(params.text_document.uri, text, params.text_document.version, now=False)

    @server.feature(T.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: NncLanguageServer, params: T.DidCloseTextDocumentParams):
        doc = ls.docs.pop(params.text_document.uri, None)
        if doc is not None and doc.pending is not None:
            doc.pending.cancel()
        ls.text_document_publish_diagnostics(T.PublishDiagnosticsParams(params.text_document.uri, []))

    def offset(doc: Document, pos: T.Position) -> int:
        return doc.index.from_client(pos.line, pos.character)

    @server.feature(T.TEXT_DOCUMENT_HOVER)
    def hover(ls: NncLanguageServer, params: T.HoverParams):
        doc = ls.analysed(params.text_document.uri)
        return features.hover(doc.analysis, doc.index, offset(doc, params.position)) if doc else None

    @server.feature(T.TEXT_DOCUMENT_INLAY_HINT, T.InlayHintOptions(resolve_provider=False))
    def inlay_hint(ls: NncLanguageServer, params: T.InlayHintParams):
        doc = ls.analysed(params.text_document.uri)
        return features.inlay_hints(doc.analysis, doc.index, params.range) if doc else None

    @server.feature(T.TEXT_DOCUMENT_COMPLETION,
                    T.CompletionOptions(trigger_characters=["(", ",", "=", ">", " ", "["]))
    def complete(ls: NncLanguageServer, params: T.CompletionParams):
        doc = ls.analysed(params.text_document.uri)
        if doc is None:
            return None
        items = completion.complete(doc.analysis, doc.index, offset(doc, params.position))
        return T.CompletionList(is_incomplete=False, items=items)

    @server.feature(T.TEXT_DOCUMENT_FORMATTING)
    def formatting(ls: NncLanguageServer, params: T.DocumentFormattingParams):
        doc = ls.analysed(params.text_document.uri)
        return features.formatting(doc.text, doc.index, uri_path(doc.uri)) if doc else None

    @server.feature(T.TEXT_DOCUMENT_DEFINITION)
    def definition(ls: NncLanguageServer, params: T.DefinitionParams):
        doc = ls.analysed(params.text_document.uri)
        return features.definition(doc.analysis, doc.index, doc.uri, offset(doc, params.position)) if doc else None

    @server.feature(T.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def symbols(ls: NncLanguageServer, params: T.DocumentSymbolParams):
        doc = ls.analysed(params.text_document.uri)
        return features.document_symbols(doc.analysis, doc.index) if doc else None

    @server.feature(T.TEXT_DOCUMENT_CODE_ACTION,
                    T.CodeActionOptions(code_action_kinds=[T.CodeActionKind.QuickFix]))
    def code_action(ls: NncLanguageServer, params: T.CodeActionParams):
        doc = ls.analysed(params.text_document.uri)
        return features.code_actions(doc.analysis, doc.index, doc.uri, params.range, ls.errors_url) if doc else None

    return server


def serve(debounce: float = DEFAULT_DEBOUNCE, stdin=None, stdout=None) -> None:
    """Run the language server on standard input/output until the client disconnects."""
    logging.basicConfig(level=logging.WARNING, format="nnc lsp: %(message)s")
    build_server(debounce).start_io(stdin, stdout)
