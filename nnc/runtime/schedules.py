"""Learning-rate schedules, stepped once per epoch (epochs are 0-based).

The trainer asks :meth:`Schedule.lr` for the rate of an epoch before training it and calls
:meth:`Schedule.end_epoch` with the monitored loss (the validation loss when there is validation
data, else the training loss) after it.

=====================================  =========================================================
kind (defaults)                        lr for epoch e (base = the optimizer's lr)
=====================================  =========================================================
``constant``                           base
``step(every, gamma=0.1)``             base * gamma ** (e // every)       (torch StepLR)
``exponential(gamma)``                 base * gamma ** e                   (torch ExponentialLR)
``cosine(min_lr=0, warmup=0)``         see :class:`Cosine`                 (torch CosineAnnealingLR)
``plateau(factor=0.5, patience=3)``    see :class:`Plateau`                (torch ReduceLROnPlateau)
=====================================  =========================================================

The parameters, their defaults and ranges are the signatures of ``nnc.vocab.SCHEDULES``; a
schedule reads them normalised from ``self.params`` (every key present) and has none of its own.
Invalid parameters raise ``NncError`` E741; a state that does not fit raises E742.
"""
from __future__ import annotations

import math

import numpy as np

from nnc import vocab
from nnc.errors import NncError

E_STATE = "E742"

#: every key a schedule's state_dict may hold (other keys in a checkpoint belong to others)
STATE_KEYS = frozenset({"schedule.lr", "schedule.best", "schedule.num_bad_epochs",
                        "schedule.last_epoch"})


class Schedule:
    """A learning rate per epoch. The closed-form schedules are stateless.

    params: the schedule's parameters, validated and completed by its signature in
    ``nnc.vocab.SCHEDULES`` (raises E741).
    """

    kind: str = ""

    def __init__(self, base_lr: float, epochs: int, **params):
        self.base_lr = float(base_lr)
        self.epochs = int(epochs)
        self.params = vocab.SCHEDULES.validate(self.kind, params)

    def lr(self, epoch: int) -> float:
        """The learning rate of (0-based) ``epoch``."""
        raise NotImplementedError

    def end_epoch(self, epoch: int, monitored_loss: float) -> None:
        """Called after each epoch with the monitored loss; only ``plateau`` uses it."""

    def state_dict(self) -> dict[str, np.ndarray]:
        return {}

    def load_state_dict(self, d: dict[str, np.ndarray]) -> None:
        ours = sorted(k for k in d if k in STATE_KEYS)
        if ours:
            raise NncError.single(E_STATE, f"unexpected schedule state `{ours[0]}` for a "
                                  f"`{self.kind}` schedule",
                                  hint="the checkpoint was written with another schedule")


class Constant(Schedule):
    kind = "constant"

    def lr(self, epoch: int) -> float:
        return self.base_lr


class Step(Schedule):
    """torch StepLR: ``base * gamma ** (epoch // every)``."""

    kind = "step"

    def lr(self, epoch: int) -> float:
        return self.base_lr * self.params["gamma"] ** (epoch // self.params["every"])


class Exponential(Schedule):
    """torch ExponentialLR: ``base * gamma ** epoch``."""

    kind = "exponential"

    def lr(self, epoch: int) -> float:
        return self.base_lr * self.params["gamma"] ** epoch


class Cosine(Schedule):
    """Linear warm-up, then torch CosineAnnealingLR from base to min_lr.

    With W = warmup and T = epochs - W:

    - warm-up, epoch e < W: ``base * (e + 1) / (W + 1)`` -- rises linearly from base/(W+1) and
      would reach base at e = W, where the cosine part starts;
    - then, with t = e - W: ``min_lr + (base - min_lr) * (1 + cos(pi * t / T)) / 2``, torch's
      closed form with ``T_max = T`` (so the last epoch, t = T - 1, is still just above min_lr, as
      with CosineAnnealingLR(T_max=epochs) stepped per epoch). Epochs past the end (t >= T) stay
      at min_lr instead of torch's periodic continuation.
    """

    kind = "cosine"

    def lr(self, epoch: int) -> float:
        w, min_lr = self.params["warmup"], self.params["min_lr"]
        if epoch < w:
            return self.base_lr * (epoch + 1) / (w + 1)
        t, t_max = epoch - w, self.epochs - w
        if t >= t_max:
            return min_lr
        return min_lr + (self.base_lr - min_lr) * (1 + math.cos(math.pi * t / t_max)) / 2


class Plateau(Schedule):
    """torch ReduceLROnPlateau(mode="min", factor, patience, threshold=1e-4,
    threshold_mode="rel", cooldown=0, min_lr=0, eps=1e-8).

    A loss is an improvement when it is below ``best * (1 - 1e-4)``. After more than ``patience``
    consecutive epochs without one (i.e. on the ``patience + 1``-th), the rate is multiplied by
    ``factor`` (unless that changes it by no more than 1e-8) and the count restarts. The new rate
    applies from the next epoch.
    """

    kind = "plateau"
    threshold = 1e-4
    eps = 1e-8
    min_lr = 0.0

    def __init__(self, base_lr, epochs, **params):
        super().__init__(base_lr, epochs, **params)
        self.current_lr = self.base_lr
        self.best = math.inf
        self.num_bad_epochs = 0
        self.last_epoch = -1

    def lr(self, epoch: int) -> float:
        return self.current_lr

    def end_epoch(self, epoch: int, monitored_loss: float) -> None:
        current = float(monitored_loss)
        self.last_epoch = epoch
        if current < self.best * (1.0 - self.threshold):  # NaN is never better
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.num_bad_epochs > self.params["patience"]:
            new_lr = max(self.current_lr * self.params["factor"], self.min_lr)
            if self.current_lr - new_lr > self.eps:
                self.current_lr = new_lr
            self.num_bad_epochs = 0

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"schedule.lr": np.array(self.current_lr, dtype=np.float64),
                "schedule.best": np.array(self.best, dtype=np.float64),
                "schedule.num_bad_epochs": np.array(self.num_bad_epochs, dtype=np.int64),
                "schedule.last_epoch": np.array(self.last_epoch, dtype=np.int64)}

    def load_state_dict(self, d: dict[str, np.ndarray]) -> None:
        expected = set(self.state_dict())
        hint = "the checkpoint was written with another schedule"
        for key in sorted(expected - set(d)):
            raise NncError.single(E_STATE, f"schedule state `{key}` is missing", hint=hint)
        for key in sorted(k for k in d if k in STATE_KEYS and k not in expected):
            raise NncError.single(E_STATE, f"unexpected schedule state `{key}`", hint=hint)
        for key in expected:
            if np.asarray(d[key]).shape != ():
                raise NncError.single(E_STATE, f"schedule state `{key}` must be a single number")
        self.current_lr = float(d["schedule.lr"])
        self.best = float(d["schedule.best"])
        self.num_bad_epochs = int(d["schedule.num_bad_epochs"])
        self.last_epoch = int(d["schedule.last_epoch"])


#: kind -> its implementation; every schedule of ``nnc.vocab.SCHEDULES``
SCHEDULE_CLASSES: dict[str, type[Schedule]] = {
    c.kind: c for c in (Constant, Step, Exponential, Cosine, Plateau)}


def make_schedule(kind: str, params: dict, base_lr: float, epochs: int) -> Schedule:
    """The schedule ``kind`` with ``params`` over its defaults, for ``epochs`` epochs from base_lr."""
    cls = SCHEDULE_CLASSES.get(kind)
    if cls is None:
        vocab.SCHEDULES.validate(kind, params)  # an unknown kind: E741
        raise NotImplementedError(f"schedule {kind} is declared but not implemented")
    return cls(base_lr, epochs, **(params or {}))
