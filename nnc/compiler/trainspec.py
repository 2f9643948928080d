"""The train block's keys and the typed values they take: losses, optimizers, schedules and data
sources, with the defaults of the language reference (section 5).

The runtime receives these values normalised (every default filled in), so it never re-reads
source text. Facts about the built-in data sets (feature shape, classes) let ``nnc check`` catch a
model that cannot fit its data without loading any data.
"""
from __future__ import annotations

from .types import (REQUIRED, ArgError, Bool, Catalogue, Enum, Float, Int, ListOf, OneOf, Param,
                    Signature, Str)

LOSSES = Catalogue("loss")
LOSSES.add(Signature("mse", [], doc="mean squared error"))
LOSSES.add(Signature("mae", [], doc="mean absolute error"))
LOSSES.add(Signature("huber", [Param("delta", Float(0, min_open=True), 1.0)], 1, doc="Huber loss"))
LOSSES.add(Signature("cross_entropy", [Param("label_smoothing", Float(0, 1), 0.0)], 1,
                     doc="softmax cross-entropy from logits; targets are class ids or probabilities"))
LOSSES.add(Signature("binary_cross_entropy", [], doc="sigmoid binary cross-entropy from logits"))
CLASSIFICATION_LOSSES = ("cross_entropy", "binary_cross_entropy")

_LR = Float(0, min_open=True)
_UNIT = Float(0, 1)
_WD = Float(min=0)


def _nesterov_check(values: dict, call) -> None:
    if values.get("nesterov") and values["momentum"] <= 0:
        raise ArgError("E402", "nesterov momentum needs momentum > 0", "e.g. sgd(lr=0.1, momentum=0.9, "
                       "nesterov=true)", call.span)


OPTIMIZERS = Catalogue("optimizer")
OPTIMIZERS.add(Signature("sgd", [Param("lr", _LR, 0.01), Param("momentum", _UNIT, 0.0),
                                 Param("nesterov", Bool(), False), Param("weight_decay", _WD, 0.0)], 1,
                         check=_nesterov_check))
_ADAM = [Param("lr", _LR, 0.001), Param("beta1", Float(0, 1, max_open=True), 0.9),
         Param("beta2", Float(0, 1, max_open=True), 0.999), Param("eps", Float(0, min_open=True), 1e-8)]
OPTIMIZERS.add(Signature("adam", _ADAM + [Param("weight_decay", _WD, 0.0)], 1))
OPTIMIZERS.add(Signature("adamw", _ADAM + [Param("weight_decay", _WD, 0.01)], 1))
OPTIMIZERS.add(Signature("rmsprop", [Param("lr", _LR, 0.001), Param("rho", Float(0, 1, max_open=True), 0.9),
                                     Param("eps", Float(0, min_open=True), 1e-8),
                                     Param("momentum", _UNIT, 0.0)], 1))
OPTIMIZERS.add(Signature("adagrad", [Param("lr", _LR, 0.01)], 1))

SCHEDULES = Catalogue("schedule")
SCHEDULES.add(Signature("constant", []))
SCHEDULES.add(Signature("step", [Param("every", Int(min=1), REQUIRED, "epochs between decays"),
                                 Param("gamma", Float(0, min_open=True), 0.1)], 2))
SCHEDULES.add(Signature("exponential", [Param("gamma", Float(0, min_open=True), REQUIRED)], 1))
SCHEDULES.add(Signature("cosine", [Param("min_lr", Float(min=0), 0.0), Param("warmup", Int(min=0), 0)]))
SCHEDULES.add(Signature("plateau", [Param("factor", Float(0, 1, min_open=True, max_open=True), 0.5),
                                    Param("patience", Int(min=0), 3)]))

# built-in data sets: per-example input shape, dtype, and number of classes (None: regression)
BUILTIN_DATASETS: dict[str, tuple[tuple[int, ...], str, int | None]] = {
    "and": ((2,), "float32", 2),
    "or": ((2,), "float32", 2),
    "xor": ((2,), "float32", 2),
    "iris": ((4,), "float32", 3),
    "digits": ((1, 8, 8), "float32", 10),
    "spirals": ((2,), "float32", 3),
    "sine": ((20, 1), "float32", None),
}

SOURCES = Catalogue("data source")
SOURCES.add(Signature("dataset", [Param("name", Enum(tuple(BUILTIN_DATASETS), "built-in dataset"), REQUIRED)], 1,
                      doc="a built-in data set"))
SOURCES.add(Signature("csv", [Param("path", Str(), REQUIRED), Param("target", Str(), REQUIRED)], 1,
                      doc="a CSV file with a header row"))
SOURCES.add(Signature("npz", [Param("path", Str(), REQUIRED), Param("x", Str(), "x"), Param("y", Str(), "y")], 1,
                      doc="a NumPy .npz archive"))

TRAIN_KEYS: dict[str, Param] = {p.name: p for p in [
    Param("data", SOURCES, None, "the training data"),
    Param("validation", OneOf((Float(0, 1, max_open=True), SOURCES),
                              "a fraction in [0, 1) or a data source"), 0.0, "held-out data"),
    Param("loss", LOSSES, REQUIRED),
    Param("optimizer", OPTIMIZERS, {"kind": "adam", "lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                                    "weight_decay": 0.0}),
    Param("schedule", SCHEDULES, {"kind": "constant"}),
    Param("epochs", Int(min=1), 10),
    Param("batch_size", Int(min=1), 32),
    Param("seed", Int(min=0), 0),
    Param("shuffle", Bool(), True),
    Param("metrics", ListOf(Enum(("accuracy", "mae", "mse"), "metric")), None,
          "default: [accuracy] for classification losses, else [mae]"),
    Param("patience", Int(min=1), None, "early stopping on validation loss"),
    Param("clip_norm", Float(0, min_open=True), None, "clip the global gradient norm"),
    Param("dtype", Enum(("float32", "float64"), "dtype"), "float32"),
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
    from . import ast as A
    from .types import show

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
