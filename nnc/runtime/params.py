"""Checks of hyper-parameters given to the runtime directly (the Python API, tests).

Specs are validated by the compiler; these guard library calls that bypass it, with the same
error code (E741) whatever the component.
"""
from __future__ import annotations

import math

import numpy as np

from ..compiler.errors import NncError

E_PARAM = "E741"


def check_number(kind: str, key: str, value, lo: float, hi: float | None = None, *,
                 lo_open: bool = False, hi_open: bool = True, integer: bool = False) -> float:
    """``value`` checked against ``lo <= value < hi`` (bounds as given); raises E741 naming the range."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok and integer:
        ok = math.isfinite(float(value)) and float(value) == int(value)
    if ok:
        v = float(value)
        ok = math.isfinite(v) and (v > lo if lo_open else v >= lo)
        if ok and hi is not None:
            ok = v < hi if hi_open else v <= hi
    if not ok:
        what = "an integer" if integer else "a number"
        rng = f"{'(' if lo_open else '['}{lo:g}, " + \
              (f"{hi:g}{')' if hi_open else ']'}" if hi is not None else "inf)")
        raise NncError.single(E_PARAM, f"{kind} {key} must be {what} in {rng}, got {value!r}")
    return int(v) if integer else v


def merge_params(what: str, kind: str, table: dict[str, dict], args: dict | None, usage: str) -> dict:
    """``args`` over ``table[kind]``'s defaults (``None`` marks a required parameter).

    Raises E741 for an unknown ``kind``, an unknown parameter or a missing required one.
    """
    if kind not in table:
        raise NncError.single(E_PARAM, f"unknown {what} `{kind}`", hint="choose one of " + ", ".join(table))
    defaults = table[kind]
    args = dict(args or {})
    for key in args:
        if key not in defaults:
            raise NncError.single(E_PARAM, f"{what} `{kind}` has no parameter `{key}`",
                                  hint=f"its parameters: {', '.join(defaults) or 'none'}")
    merged = {**defaults, **args}
    for key, value in merged.items():
        if value is None:
            raise NncError.single(E_PARAM, f"{what} `{kind}` needs `{key}`", hint=usage.format(key=key))
    return merged
