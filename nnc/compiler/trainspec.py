"""The train block's keys and the typed values they take (the language reference, section 5).

The vocabularies the keys take -- losses, optimizers, schedules, metrics, data sources and the
built-in data sets -- are declared once in ``nnc/vocab.py``, which the runtime reads too; they are
re-exported here for the compiler. The runtime receives these values normalised (every default
filled in), so it never re-reads source text.
"""
from __future__ import annotations

from ..vocab import (BUILTIN_DATASETS, CLASS_WEIGHT, CLASSIFICATION_LOSSES, LOSSES, METRICS, OPTIMIZERS,
                     SCHEDULES, SOURCES)
from ..lang.types import REQUIRED, Bool, Catalogue, Enum, Float, Int, ListOf, OneOf, Param

__all__ = ["BUILTIN_DATASETS", "CLASSIFICATION_LOSSES", "LOSSES", "METRICS", "OPTIMIZERS", "SCHEDULES",
           "SOURCES", "TRAIN_KEYS", "PARAM_ALIASES", "misplaced_key_hint"]

TRAIN_KEYS: dict[str, Param] = {p.name: p for p in [
    Param("data", SOURCES, None, "the training data"),
    Param("validation", OneOf((Float(0, 1, max_open=True), SOURCES),
                              "a fraction in [0, 1) or a data source"), 0.0, "held-out data"),
    Param("loss", LOSSES, REQUIRED),
    Param("optimizer", OPTIMIZERS, OPTIMIZERS.value("adam")),
    Param("schedule", SCHEDULES, SCHEDULES.value("constant")),
    Param("epochs", Int(min=1), 10),
    Param("batch_size", Int(min=1), 32),
    Param("seed", Int(min=0), 0),
    Param("shuffle", Bool(), True),
    Param("metrics", ListOf(METRICS), None,
          "default: [accuracy] for classification losses, else [mae]"),
    Param("patience", Int(min=1), None, "early stopping on validation loss"),
    Param("clip_norm", Float(0, min_open=True), None, "clip the global gradient norm"),
    Param("dtype", Enum(("float32", "float64"), "dtype"), "float32"),
    Param("class_weight", CLASS_WEIGHT, None, "weight each example's loss by its class"),
    Param("restore_best", Bool(), False, "keep the weights of the epoch with the lowest val_loss"),
]}

# names people write for a parameter of a loss, optimizer or schedule (PyTorch's, Keras's) -> ours
PARAM_ALIASES = {"learning_rate": "lr", "epsilon": "eps", "alpha": "rho", "beta_1": "beta1",
                 "beta_2": "beta2", "smoothing": "label_smoothing"}


def misplaced_key_hint(key: str, value, given: dict, const=lambda name: None, *,
                       via_set: bool = False) -> str | None:
    """The hint for a train key that is a parameter of a train key's value: ``learning_rate = 0.01``
    -> "... `optimizer = adam(lr=0.01)`". ``value`` is what the user wrote (an AST value), ``given``
    the train block's (and ``--set``'s) values by key, ``const`` looks up a `let` constant. The
    call keeps the arguments of the optimizer (loss, schedule) the block already gives; without
    one it is the default, or else the first that has the parameter and needs nothing else.
    None if the key is no such parameter."""
    from ..lang import ast as A
    from ..lang.types import show

    param = PARAM_ALIASES.get(key, key)
    for tk, p in TRAIN_KEYS.items():
        cat = p.type
        if not isinstance(cat, Catalogue):
            continue
        owners = [s for s in cat.signatures.values() if param in s.by_name]
        if not owners:
            continue
        current = given.get(tk)
        if isinstance(current, A.Name) and const(current.name) is not None:
            current = const(current.name)
        current_name = current.name if isinstance(current, (A.Name, A.Call)) else None
        args: list[str] = []
        lacks = ""
        sig = cat.signatures.get(current_name) if current_name else None
        if sig is not None and param in sig.by_name:
            if isinstance(current, A.Call):
                args = [show(a) if not isinstance(a, A.KwArg) else f"{a.name}={show(a.value)}"
                        for a in current.args or [] if not (isinstance(a, A.KwArg) and a.name == param)]
        else:
            if sig is not None:
                lacks = f" ({sig.name} has no `{param}`)"
            default = p.default.get("kind") if isinstance(p.default, dict) else None
            free = [s for s in owners if all(q.default is not REQUIRED or q.name == param for q in s.params)]
            sig = next((s for s in free if s.name == default), free[0] if free else None)
            if sig is None:
                continue
        call = f"{sig.name}({', '.join(args + [f'{param}={show(value)}'])})"
        what = f"the {cat.what}'s `{param}`" if param != key else f"a parameter of the {cat.what}"
        setting = f"--set '{tk}={call}'" if via_set else f"{tk} = {call}"
        return f"`{key}` is {what}: `{setting}`{lacks}"
    return None
