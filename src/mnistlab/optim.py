"""The optimizer and learning-rate schedule a config asks for, for training and fine-tuning alike.

torch's optimizers wrap `step`, `zero_grad` and `add_param_group` in guards that keep its compiler
(torch._dynamo) out of them, and those guards import the compiler on first use: a large share of what
a short run costs besides its training. Nothing here is compiled, so `eager` calls the
functions inside the guards, the very same code and kernels; the compiler is imported only when
asked for (`TrainConfig.compile`).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterable
from types import MethodType

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler

from .config import TrainConfig


def eager(kind: type[Optimizer], params: Iterable, **options: object) -> Optimizer:
    """`kind(params, **options)` (torch.optim.Adam, say), its methods called inside the compiler's guards.

    The object is of `kind` itself; the unguarded methods are set on it before `__init__`, which already
    adds the parameter groups. Its steps are bit for bit those of torch's own (the same functions).
    """
    optimizer = kind.__new__(kind)
    optimizer.add_param_group = MethodType(inspect.unwrap(Optimizer.add_param_group), optimizer)
    optimizer.zero_grad = MethodType(inspect.unwrap(Optimizer.zero_grad), optimizer)
    optimizer.step = MethodType(_unguarded_step(kind), optimizer)
    kind.__init__(optimizer, params, **options)
    return optimizer


def _unguarded_step(kind: type[Optimizer]) -> Callable:
    step = inspect.unwrap(kind.step)

    def unguarded(self: Optimizer, closure: Callable[[], float] | None = None) -> float | None:
        with torch.no_grad():  # what the guard did besides keeping the compiler out
            return step(self, closure)

    return unguarded


def make_optimizer(model: nn.Module, config: TrainConfig) -> Optimizer:
    """The config's optimizer. Weight decay applies to weights, not to biases and norm parameters.

    Adam and AdamW use their fused kernels (CUDA, CPU since torch 2.4), the multi-tensor path elsewhere.
    """
    params: list = list(model.parameters())
    if config.weight_decay:
        params = [{"params": [p for p in params if p.ndim > 1], "weight_decay": config.weight_decay},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return eager(torch.optim.SGD, params, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=0.0,
                     foreach=True)
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    try:
        return eager(kind, params, lr=config.lr, weight_decay=0.0, fused=True)
    except (RuntimeError, ValueError):
        return eager(kind, params, lr=config.lr, weight_decay=0.0, foreach=True)


def make_scheduler(optimizer: Optimizer, config: TrainConfig, total_steps: int) -> LRScheduler | None:
    """The config's learning-rate schedule over `total_steps` batches; None for a constant rate."""
    if config.schedule == "onecycle":
        return LambdaLR(optimizer, functools.partial(one_cycle, total=total_steps))
    if config.schedule == "cosine":
        return CosineAnnealingLR(optimizer, T_max=total_steps)
    return None


def one_cycle(step: int, total: int, warmup: float = 0.25, start: float = 1 / 25, end: float = 1e-4) -> float:
    """The learning rate at `step` of `total`, as a share of the peak: a cosine rise from `start` over the
    first `warmup` of the steps, then a cosine fall to `end` (OneCycleLR's shape, for any number of steps)."""
    rise = max(1, round(warmup * total))
    if step < rise:
        return start + (1 - start) * (1 - math.cos(math.pi * step / rise)) / 2
    progress = min(1.0, (step - rise) / max(1, total - rise))
    return end + (1 - end) * (1 + math.cos(math.pi * progress)) / 2
