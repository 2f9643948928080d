"""Every train-block vocabulary, declared once: losses, optimizers, schedules, initialisers,
metrics, data sources and the built-in data sets, each entry a :class:`Signature` with its
parameters' types, ranges and defaults (the language reference, sections 4 and 5).

One declaration, three readers (onnx's ``OpRun`` fills attributes from the schema and never
restates a default; tinygrad writes SGD as ``LARS(tcoef=0)`` so a default lives in one place):

- the compiler binds what a spec writes (``optimizer = adam(lr=0.01)``) with
  :meth:`Catalogue.coerce`; the train block's keys are in ``nnc.compiler.trainspec``;
- an engine (the NumPy runtime in ``nnc.runtime``, the coming PyTorch one) receives normalised
  values (every parameter present) and, when called directly from Python, validates them with
  :meth:`Catalogue.validate` -- the same checks, raised as ``NncError`` E741. An engine has no
  defaults or ranges of its own: it implements each entry by name and reads its parameters
  (``hyper["momentum"]``), nothing else (``tests/test_catalogue.py`` holds it to that).

Adding an entry: its ``Signature`` here, its implementation under the same name in every engine
(``runtime/losses.py``, ``optimizers.py``, ``schedules.py``, ``init.py``, ``metrics.py``), a row in
the tables of ``docs/language.md``; nothing else.

This module imports no NumPy: ``nnc check`` reads it.
"""
from __future__ import annotations

from .lang.types import (REQUIRED, ArgError, Bool, Catalogue, Enum, Float, Int, Ints, ListOf, OneOf, Param,
                         Signature, Str)

# ----------------------------------------------------------------------------------------------
# losses

LOSSES = Catalogue("loss")
LOSSES.add(Signature("mse", [], doc="mean squared error"))
LOSSES.add(Signature("mae", [], doc="mean absolute error"))
LOSSES.add(Signature("huber", [Param("delta", Float(0, min_open=True), 1.0)], 1, doc="Huber loss"))
LOSSES.add(Signature("cross_entropy", [Param("label_smoothing", Float(0, 1), 0.0)], 1,
                     doc="softmax cross-entropy from logits; targets are class ids or probabilities"))
LOSSES.add(Signature("binary_cross_entropy", [], doc="sigmoid binary cross-entropy from logits"))

#: losses whose output is a class distribution (metrics default to accuracy for these)
CLASSIFICATION_LOSSES = ("cross_entropy", "binary_cross_entropy")
# the final activation a loss is fused with: after it, the loss is computed from the logits before it
# (faster and numerically stable); the runtime fuses by it and the compiler warns (W601) against it
FUSED_ACTIVATION = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}

# ----------------------------------------------------------------------------------------------
# optimizers (update rules: torch.optim's)

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

# ----------------------------------------------------------------------------------------------
# learning-rate schedules (stepped per epoch)

SCHEDULES = Catalogue("schedule")
SCHEDULES.add(Signature("constant", []))
SCHEDULES.add(Signature("step", [Param("every", Int(min=1), REQUIRED, "epochs between decays"),
                                 Param("gamma", Float(0, min_open=True), 0.1)], 2))
SCHEDULES.add(Signature("exponential", [Param("gamma", Float(0, min_open=True), REQUIRED)], 1))
SCHEDULES.add(Signature("cosine", [Param("min_lr", Float(min=0), 0.0), Param("warmup", Int(min=0), 0)]))
SCHEDULES.add(Signature("plateau", [Param("factor", Float(0, 1, min_open=True, max_open=True), 0.5),
                                    Param("patience", Int(min=0), 3)]))

# ----------------------------------------------------------------------------------------------
# initialisers: one catalogue shared by every op's `init=` (torch.nn.init's)


def _ordered(values: dict, call, lo: str, hi: str) -> None:
    if values[lo] >= values[hi]:
        raise ArgError("E402", f"`{call.name}` needs {lo} < {hi}, got {values[lo]} and {values[hi]}",
                       None, call.span)


INITIALIZERS = Catalogue("initializer")
for _name in ("zeros", "ones", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
              "lecun_normal"):
    INITIALIZERS.add(Signature(_name, []))
INITIALIZERS.add(Signature("orthogonal", []))
INITIALIZERS.add(Signature("constant", [Param("v", Float(), REQUIRED)], 1))
# NOTE: bare `uniform` is uniform(-0.05, 0.05), embedding's default (docs/language.md, section 7)
INITIALIZERS.add(Signature("uniform", [Param("low", Float(), -0.05), Param("high", Float(), 0.05)], 2,
                           check=lambda v, c: _ordered(v, c, "low", "high")))
INITIALIZERS.add(Signature("normal", [Param("mean", Float(), 0.0), Param("std", Float(min=0), 0.05)], 2))


def init_value(kind: str, **args) -> dict:
    """A normalised initialiser value, e.g. ``init_value("uniform", low=-0.05, high=0.05)``."""
    return INITIALIZERS.value(kind, **args)


# ----------------------------------------------------------------------------------------------
# metrics

METRICS = Enum(("accuracy", "mae", "mse", "precision", "recall", "f1", "auc", "r2"), "metric")
#: the metrics of a classifier's predicted classes (binary for one output unit, else macro over classes)
CLASS_METRICS = ("accuracy", "precision", "recall", "f1", "auc")

#: `class_weight`: `balanced` (n / (classes * count_c) on the training split) or one weight > 0 per class
CLASS_WEIGHT = OneOf((Enum(("balanced",), "class weighting"), ListOf(Float(0, min_open=True), unique=False)),
                     "`balanced` or a list of weights > 0, one per class")


def default_metrics(loss_kind: str) -> list[str]:
    """The train block's default: ``[accuracy]`` for classification losses, ``[mae]`` otherwise."""
    return ["accuracy"] if loss_kind in CLASSIFICATION_LOSSES else ["mae"]


# ----------------------------------------------------------------------------------------------
# data sources and the built-in data sets

#: built-in data sets: per-example input shape, dtype, and number of classes (None: regression).
#: ``nnc check`` validates a model against these facts without loading any data.
BUILTIN_DATASETS: dict[str, tuple[tuple[int, ...], str, int | None]] = {
    "and": ((2,), "float32", 2),
    "or": ((2,), "float32", 2),
    "xor": ((2,), "float32", 2),
    "iris": ((4,), "float32", 3),
    "digits": ((1, 8, 8), "float32", 10),
    "spirals": ((2,), "float32", 3),
    "sine": ((20, 1), "float32", None),
}

#: the options of a CSV text column (contract 5.3): they mean something only with `text=`
TEXT_OPTIONS = ("vocab", "length", "tokenizer", "lowercase")
TOKENIZERS = Enum(("words", "chars"), "tokenizer")
#: the regular expression of `tokenizer=words` (``re.findall``); `chars` takes every character
WORD_PATTERN = r"\w+"
IMAGE_COLORS = Enum(("grayscale", "rgb"), "color")
#: image files `images(...)` reads (compared in lower case) and the channels of each color mode
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
IMAGE_CHANNELS = {"grayscale": 1, "rgb": 3}


def text_option_problem(values: dict, given) -> tuple[str, str] | None:
    """(message, hint) when a csv source's text options do not go together, else None: `text=`
    needs `vocab` and `length`; a text option without `text=` means nothing. ``given``: the
    parameter names the user wrote (a spec's call) or whose value is not None (from Python)."""
    if values.get("text") is not None:
        missing = [k for k in ("vocab", "length") if values.get(k) is None]
        if missing:
            return (f"csv(text=...) needs `{missing[0]}`",
                    'e.g. csv("reviews.csv", target="label", text="review", vocab=20000, length=200)')
        return None
    stray = [k for k in TEXT_OPTIONS if k in given]
    if stray:
        return (f"`{stray[0]}` is an option of a text column, but the csv source has no `text`",
                'name the column of text, e.g. text="review", or remove it')
    return None


def _text_check(values: dict, call) -> None:
    problem = text_option_problem(values, {kw.name for kw in call.keywords})
    if problem is not None:
        raise ArgError("E403", problem[0], problem[1], call.span)


SOURCES = Catalogue("data source")
SOURCES.add(Signature("dataset", [Param("name", Enum(tuple(BUILTIN_DATASETS), "built-in dataset"), REQUIRED)], 1,
                      doc="a built-in data set"))
SOURCES.add(Signature("csv", [Param("path", Str(), REQUIRED), Param("target", Str(), REQUIRED),
                              Param("text", Str(), None, "the column holding text (the model reads its token ids)"),
                              Param("vocab", Int(min=3), None, "ids in the vocabulary, padding and unknown included"),
                              Param("length", Int(min=1), None, "token ids per text (truncated or padded)"),
                              Param("tokenizer", TOKENIZERS, "words"), Param("lowercase", Bool(), True)], 1,
                      doc="a CSV file with a header row", check=_text_check))
SOURCES.add(Signature("npz", [Param("path", Str(), REQUIRED), Param("x", Str(), "x"), Param("y", Str(), "y")], 1,
                      doc="a NumPy .npz archive"))
SOURCES.add(Signature("images", [Param("folder", Str(), REQUIRED), Param("size", Ints(2, labels="H, W"), REQUIRED,
                                                                        "every image is resized to [H, W]"),
                                 Param("color", IMAGE_COLORS, "rgb")], 1,
                      doc="a folder of images, one subfolder per class (needs Pillow: nnc[images])"))
