"""The lowering's passes, run by :class:`nnc.compiler.lower.Lowerer` in the order in which their
diagnostics are emitted, all over one shared :class:`~.context.Context` (diagnostics and constants):

- :mod:`.context`: the context, the scopes and values, the file's ``let`` constants and ``--set`` values;
- :mod:`.model`: the model's statements (inputs, ``repeat``, pipelines, merges, layer naming);
- :mod:`.outputs`: the model's outputs, totals and ``assert`` statements;
- :mod:`.train`: the train block, checked against the model.
"""
