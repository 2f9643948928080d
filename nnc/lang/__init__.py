"""The language's data model, below the compiler, the vocabulary and the engines: the syntax tree
(``ast``: statements and values as the user wrote them, with their spans) and the typed signatures
that bind and check values (``types``: ``Signature``, ``Param``, ``Catalogue`` and the value types).
The compiler parses into it and binds ops with it; ``nnc.vocab`` declares every train-block
vocabulary with it; the runtime validates direct API calls with it. No NumPy, no pydantic.
"""
