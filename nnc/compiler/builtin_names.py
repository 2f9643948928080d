"""The built-in value names of the language, derived from the vocabularies of the op catalogue
(``ops.OPS``) and of the train block (``trainspec.TRAIN_KEYS``): paddings, initialisers, losses,
optimizers, schedules, data sources, built-in data sets, metrics and enum choices such as
``activation=tanh``.

Nothing here is a list of its own: a name is built in because some parameter's type accepts it
(:meth:`nnc.lang.types.Type.vocabulary`). A ``let`` may not take such a name (contract 3.1), and
an error about a built-in name given to a parameter that does not take it says where it belongs.
"""
from __future__ import annotations

from functools import lru_cache

from ..record import record


@record(frozen=True)
class Use:
    """Where a built-in name means something: ``Use("padding", "conv2d", "padding")``."""

    what: str            # the kind of value: padding, initializer, loss, built-in dataset, ...
    owner: str           # an op's name, or "train" for a train key
    param: str           # the parameter (or train key) whose value it is
    value: str           # how the name is written there: ``same``, ``dataset(iris)``, ``step(...)``


@lru_cache(maxsize=1)
def builtin_values() -> dict[str, tuple[Use, ...]]:
    """``{name: (Use, ...)}`` for every bare name a parameter or train key gives a meaning to."""
    from .ops import OPS
    from .trainspec import TRAIN_KEYS
    from ..lang.types import REQUIRED, Catalogue

    out: dict[str, list[Use]] = {}

    def add(owner: str, param) -> None:
        t = param.type
        for name, what in t.vocabulary().items():
            value = name
            if isinstance(t, Catalogue) and name not in t.signatures:  # an argument: dataset(iris)
                value = next(f"{s.name}({name})" for s in t.signatures.values()
                             if any(name in p.type.vocabulary() for p in s.params))
            elif isinstance(t, Catalogue) and any(p.default is REQUIRED for p in t.signatures[name].params):
                value = f"{name}(...)"
            out.setdefault(name, []).append(Use(what, owner, param.name, value))

    for op in OPS.values():
        for p in op.sig.params:
            add(op.name, p)
    for p in TRAIN_KEYS.values():
        add("train", p)
    return {name: tuple(uses) for name, uses in out.items()}


def is_builtin_value(name: str) -> bool:
    return name in builtin_values()


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def describe(name: str) -> str:
    """What a built-in name is, with an example of its use: ``a padding choice of conv1d and conv2d
    (`padding=same`)``, ``an initializer choice (`init=zeros`)``, ``a loss and metric choice (`loss = mae`)``."""
    uses = builtin_values()[name]
    kinds = list(dict.fromkeys(u.what.removeprefix("built-in ") for u in uses))
    ops = list(dict.fromkeys(u.owner for u in uses if u.owner != "train"))
    of = f" of {_join(ops)}" if ops and len(ops) <= 3 and len(kinds) == 1 else ""
    phrase = _join(kinds)
    return f"{_article(phrase)} {phrase} choice{of} (`{example(name)}`)"


def example(name: str) -> str:
    """How the name is used, as in the first parameter that takes it: ``padding=same``."""
    first = builtin_values()[name][0]
    return f"{first.param} = {first.value}" if first.owner == "train" else f"{first.param}={first.value}"
