"""``nnc lsp``: a language server for ``.nnspec`` files, on standard input/output.

It gives an editor what ``nnc check`` knows, as the user types: diagnostics (the same checker,
each linked to its code's section of ``docs/errors.md``), hover (an op's or block's signature and
defaults; a stage's output shape, parameters and FLOPs; a constant's value), inlay hints (the output
shape after every stage), completion (ops, blocks, keyword parameters, constants and values in
scope, train keys and their values), formatting (``nnc fmt``), go-to-definition, document symbols
and quick fixes for the mechanical hints ("did you mean", "add `flatten` before it").

Layout (only :mod:`.server` imports pygls, an optional extra: ``pip install 'nnc[lsp]'``):

- :mod:`.analysis` -- one version of a document: diagnostics, tree, lowered model, names;
- :mod:`.features`, :mod:`.completion` -- the protocol features over an analysis;
- :mod:`.positions` -- compiler spans <-> protocol positions (UTF-16 code units by default);
- :mod:`.server` -- documents, debouncing, and the handlers.

Set-up for VS Code, Neovim and Helix: ``docs/editors.md``.
"""
from __future__ import annotations

from ..errors import NncError


def run(debounce: float | None = None) -> int:
    """Serve until the client disconnects; an NncError (E906) when pygls is not installed."""
    try:
        import pygls  # noqa: F401
        import lsprotocol  # noqa: F401
    except ImportError:
        raise NncError.single("E906", "`nnc lsp` needs pygls, which is not installed", path="nnc lsp",
                              hint="install the language server's extra: pip install 'nnc[lsp]'") from None
    import os

    from .server import DEFAULT_DEBOUNCE, serve
    # NOTE: the protocol gets its own handles on the standard streams: the CLI wraps sys.stdout for
    # its verbs, and pygls closes the streams it was given when the client disconnects
    with os.fdopen(os.dup(0), "rb") as stdin, os.fdopen(os.dup(1), "wb") as stdout:
        serve(DEFAULT_DEBOUNCE if debounce is None else debounce, stdin, stdout)
    return 0
