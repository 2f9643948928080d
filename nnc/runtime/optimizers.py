"""Optimizers with PyTorch's ``torch.optim`` update rules, on NumPy arrays updated in place.

==========  ===================================================  ==================================
kind        defaults (section 5 of the language reference)       torch.optim equivalent
==========  ===================================================  ==================================
sgd         lr=0.01, momentum=0, nesterov=false, weight_decay=0  SGD(dampening=0)
adam        lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8,          Adam(betas=(beta1, beta2),
            weight_decay=0                                        amsgrad=False)
adamw       as adam, weight_decay=0.01                            AdamW (decoupled decay)
rmsprop     lr=0.001, rho=0.9, eps=1e-8, momentum=0               RMSprop(alpha=rho, centered=False)
adagrad     lr=0.01                                               Adagrad(lr_decay=0, eps=1e-10,
                                                                  initial_accumulator_value=0)
==========  ===================================================  ==================================

The learning rate is passed to every :meth:`Optimizer.step` (it comes from the schedule); the
``lr`` hyper-parameter is only the schedule's base rate and is kept in ``hyper["lr"]``.

The update of each parameter follows torch's single-tensor code path (the one used on the CPU)
operation by operation -- the same order of operations and the same scalar roundings (a Python
float scalar meets a float32 array as a float32 number, as in torch's CPU kernels) -- so results
agree with torch to within float rounding (torch may fuse a multiply-add). Arithmetic stays in
each parameter's dtype. State buffers and two scratch buffers per dtype are allocated once; a
step allocates no parameter-sized arrays.

Like torch, a parameter without a gradient in ``grads`` is skipped: its state and its step count
stay as they are (the step count is kept per parameter, as torch does).

State (:meth:`Optimizer.state_dict`) is a flat dict of arrays, saveable with ``np.savez``:
``"<kind>.step.<param>"`` (0-d int64) and ``"<kind>.<buffer>.<param>"`` with torch's buffer
names (``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``, ``square_avg``, ``sum``).

The hyper-parameters, their defaults and ranges are the signatures of ``nnc.vocab.OPTIMIZERS``:
an optimizer receives them normalised (every key present) and has none of its own. Invalid ones
raise ``NncError`` E741; a state that does not fit (another optimizer, other parameters) raises
E742 naming the key.
"""
from __future__ import annotations

import numpy as np

from nnc import vocab
from nnc.errors import NncError

E_STATE = "E742"


class Optimizer:
    """Base class: per-parameter state buffers, step counts, scratch space and (de)serialisation.

    params: name -> array, updated in place by :meth:`step` (floating dtype, any shape).
    hyper: the optimizer's hyper-parameters, validated and completed by its signature in
    ``nnc.vocab.OPTIMIZERS`` (raises E741).
    """

    kind: str = ""

    def __init__(self, params: dict[str, np.ndarray], **hyper):
        self.hyper = vocab.OPTIMIZERS.validate(self.kind, hyper)
        self.params = params
        for name, p in params.items():
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise TypeError(f"parameter {name} must be a floating NumPy array")
        self.steps: dict[str, int] = {name: 0 for name in params}
        self.buffers: dict[str, dict[str, np.ndarray]] = {
            buf: {name: np.zeros_like(p) for name, p in params.items()}
            for buf in self._buffer_names()}
        # two flat scratch arrays per dtype, as large as the largest parameter of that dtype
        sizes: dict[np.dtype, int] = {}
        for p in params.values():
            sizes[p.dtype] = max(sizes.get(p.dtype, 0), p.size)
        self._scratch = {dt: (np.empty(n, dt), np.empty(n, dt)) for dt, n in sizes.items()}

    # -- to be provided by each optimizer -------------------------------------------------------

    def _buffer_names(self) -> tuple[str, ...]:
        return ()

    def _update(self, name: str, p: np.ndarray, g: np.ndarray, lr: float, step: int,
                t0: np.ndarray, t1: np.ndarray) -> None:
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------------

    def step(self, grads: dict[str, np.ndarray], lr: float) -> None:
        """One update of every parameter that has a gradient in ``grads``, at learning rate lr."""
        lr = float(lr)
        for name in grads:
            if name not in self.params:
                raise KeyError(f"gradient for unknown parameter {name}")
        for name, p in self.params.items():
            g = grads.get(name)
            if g is None:
                continue
            g = np.asarray(g, dtype=p.dtype)
            if g.shape != p.shape:
                raise ValueError(f"gradient of {name} has shape {g.shape}, expected {p.shape}")
            self.steps[name] += 1
            s0, s1 = self._scratch[p.dtype]
            t0 = s0[:p.size].reshape(p.shape)
            t1 = s1[:p.size].reshape(p.shape)
            self._update(name, p, g, lr, self.steps[name], t0, t1)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat, npz-saveable copy of the state (step counts as 0-d int64 arrays)."""
        out: dict[str, np.ndarray] = {}
        for name in self.params:
            out[f"{self.kind}.step.{name}"] = np.array(self.steps[name], dtype=np.int64)
        for buf, arrays in self.buffers.items():
            for name, a in arrays.items():
                out[f"{self.kind}.{buf}.{name}"] = a.copy()
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore a :meth:`state_dict` into the existing buffers (raises E742 if it does not fit)."""
        expected = {f"{self.kind}.step.{name}" for name in self.params}
        expected |= {f"{self.kind}.{buf}.{name}" for buf, arrays in self.buffers.items()
                     for name in arrays}
        # keys of other components (weights, the schedule) may share the dict: optimizer state is
        # "<optimizer kind>.<state name>.<param>" (a layer named "adam" has keys "adam.weight" ...)
        def is_state(key: str) -> bool:
            parts = key.split(".", 2)
            return len(parts) == 3 and parts[0] in OPTIMIZER_CLASSES and parts[1] in STATE_NAMES
        ours = {k for k in state if is_state(k) and k.startswith(f"{self.kind}.")}
        hint = "the checkpoint was written with another optimizer or model; start a new run"
        for key in sorted(expected - set(state)):
            raise NncError.single(E_STATE, f"optimizer state `{key}` is missing", hint=hint)
        for key in sorted(ours - expected):
            raise NncError.single(E_STATE, f"unexpected optimizer state `{key}`", hint=hint)
        others = sorted(k for k in state if is_state(k) and k not in ours)
        if others:
            raise NncError.single(E_STATE, f"unexpected optimizer state `{others[0]}` "
                                  f"(this run uses {self.kind})", hint=hint)
        for buf, arrays in self.buffers.items():
            for name, a in arrays.items():
                key = f"{self.kind}.{buf}.{name}"
                v = np.asarray(state[key])
                if v.shape != a.shape:
                    raise NncError.single(
                        E_STATE, f"optimizer state `{key}` has shape {list(v.shape)}, "
                                 f"expected {list(a.shape)}", hint=hint)
        for name in self.params:
            key = f"{self.kind}.step.{name}"
            v = np.asarray(state[key])
            if v.shape != () or v.dtype.kind not in "iu" or int(v) < 0:
                raise NncError.single(E_STATE, f"optimizer state `{key}` must be a "
                                      "non-negative integer", hint=hint)
        for buf, arrays in self.buffers.items():
            for name, a in arrays.items():
                np.copyto(a, state[f"{self.kind}.{buf}.{name}"], casting="same_kind")
        for name in self.params:
            self.steps[name] = int(state[f"{self.kind}.step.{name}"])


class SGD(Optimizer):
    """torch.optim.SGD(lr, momentum, dampening=0, weight_decay, nesterov)::

        d = g + weight_decay * p
        buf = d on the first step, else momentum * buf + d        (if momentum != 0)
        d = d + momentum * buf if nesterov else buf               (if momentum != 0)
        p = p - lr * d
    """

    kind = "sgd"

    def _buffer_names(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.hyper["momentum"] != 0 else ()

    def _update(self, name, p, g, lr, step, t0, t1):
        wd, mom = self.hyper["weight_decay"], self.hyper["momentum"]
        d = g
        if wd != 0:
            np.multiply(p, wd, out=t0)
            np.add(g, t0, out=t0)
            d = t0
        if mom != 0:
            buf = self.buffers["momentum_buffer"][name]
            if step == 1:
                np.copyto(buf, d)
            else:
                buf *= mom
                buf += d
            if self.hyper["nesterov"]:
                np.multiply(buf, mom, out=t1)
                np.add(d, t1, out=t1)
                d = t1
            else:
                d = buf
        np.multiply(d, -lr, out=t1)
        p += t1


class Adam(Optimizer):
    """torch.optim.Adam (amsgrad=False)::

        t += 1;  d = g + weight_decay * p
        m = lerp(m, d, 1 - beta1)                  # = beta1 m + (1 - beta1) d
        v = beta2 v + (1 - beta2) d d
        p = p - (lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    kind = "adam"
    decoupled = False

    def _buffer_names(self) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")

    def _update(self, name, p, g, lr, step, t0, t1):
        h = self.hyper
        beta1, beta2, eps, wd = h["beta1"], h["beta2"], h["eps"], h["weight_decay"]
        m = self.buffers["exp_avg"][name]
        v = self.buffers["exp_avg_sq"][name]
        d = g
        if wd != 0:
            if self.decoupled:
                p *= 1 - lr * wd
            else:
                np.multiply(p, wd, out=t0)
                np.add(g, t0, out=t0)
                d = t0
        # NOTE: torch's lerp(start, end, w) = start + w (end - start) for |w| < 0.5,
        # else end - (end - start) (1 - w), with w rounded to the dtype first.
        w = p.dtype.type(1 - beta1)
        np.subtract(d, m, out=t1)
        if abs(w) < 0.5:
            t1 *= w
            m += t1
        else:
            t1 *= p.dtype.type(1) - w
            np.subtract(d, t1, out=m)
        v *= beta2
        np.multiply(d, 1 - beta2, out=t1)
        t1 *= d
        v += t1
        step_size = lr / (1 - beta1 ** step)
        bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
        np.sqrt(v, out=t1)
        t1 /= bias_correction2_sqrt
        t1 += eps
        np.multiply(m, -step_size, out=t0)
        t0 /= t1
        p += t0


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled decay ``p = p (1 - lr weight_decay)`` first."""

    kind = "adamw"
    decoupled = True


class RMSprop(Optimizer):
    """torch.optim.RMSprop(alpha=rho, centered=False, weight_decay=0)::

        s = rho s + (1 - rho) g g;   a = sqrt(s) + eps
        buf = momentum buf + g / a;  p = p - lr buf          (momentum > 0)
        p = p - lr g / a                                     (momentum = 0)
    """

    kind = "rmsprop"

    def _buffer_names(self) -> tuple[str, ...]:
        return ("square_avg", "momentum_buffer") if self.hyper["momentum"] > 0 else ("square_avg",)

    def _update(self, name, p, g, lr, step, t0, t1):
        rho, eps, mom = self.hyper["rho"], self.hyper["eps"], self.hyper["momentum"]
        s = self.buffers["square_avg"][name]
        s *= rho
        np.multiply(g, 1 - rho, out=t1)
        t1 *= g
        s += t1
        np.sqrt(s, out=t1)
        t1 += eps
        if mom > 0:
            buf = self.buffers["momentum_buffer"][name]
            buf *= mom
            np.divide(g, t1, out=t1)
            buf += t1
            np.multiply(buf, -lr, out=t1)
            p += t1
        else:
            np.multiply(g, -lr, out=t0)
            t0 /= t1
            p += t0


class Adagrad(Optimizer):
    """torch.optim.Adagrad(lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10)::

        s = s + g g;   p = p - lr g / (sqrt(s) + 1e-10)
    """

    kind = "adagrad"
    eps = 1e-10

    def _buffer_names(self) -> tuple[str, ...]:
        return ("sum",)

    def _update(self, name, p, g, lr, step, t0, t1):
        s = self.buffers["sum"][name]
        np.multiply(g, g, out=t1)          # NOTE: torch's lr_decay is 0 here, so its lr is used as given
        s += t1
        np.sqrt(s, out=t1)
        t1 += self.eps
        np.multiply(g, -lr, out=t0)
        t0 /= t1
        p += t0


#: kind -> its implementation; every optimizer of ``nnc.vocab.OPTIMIZERS``
OPTIMIZER_CLASSES: dict[str, type[Optimizer]] = {c.kind: c for c in (SGD, Adam, AdamW, RMSprop, Adagrad)}

#: every per-parameter state name used in state_dict keys ("<kind>.<name>.<param>")
STATE_NAMES = frozenset({"step", "momentum_buffer", "exp_avg", "exp_avg_sq", "square_avg", "sum"})


def make_optimizer(kind: str, params: dict[str, np.ndarray], hyper: dict) -> Optimizer:
    """The optimizer ``kind`` over ``params`` (updated in place) with ``hyper`` over its defaults."""
    cls = OPTIMIZER_CLASSES.get(kind)
    if cls is None:
        vocab.OPTIMIZERS.validate(kind, hyper)  # an unknown kind: E741
        raise NotImplementedError(f"optimizer {kind} is declared but not implemented")
    return cls(params, **(hyper or {}))
