"""The model registry: every model is a function registered by name.

Models take normalised images of shape (B, 1, 28, 28) and return logits (B, 10). Adding a model
is one decorated function; `create_model(name, **args)` rebuilds it from a checkpoint's config.
This module imports nothing from training or serving.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from .data import IMAGE_SIZE, NUM_CLASSES

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: make `fn` available to `create_model` under its own name."""
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def model_defaults(name: str) -> dict:
    """The keyword arguments of model `name` with their default values."""
    params = inspect.signature(_lookup(name)).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def create_model(name: str, **args) -> nn.Module:
    """Build a registered model; unknown names and arguments raise `ValueError`."""
    factory = _lookup(name)
    unknown = set(args) - set(inspect.signature(factory).parameters)
    if unknown:
        raise ValueError(f"model {name!r} takes no argument {', '.join(sorted(unknown))}; "
                         f"its arguments are {model_defaults(name)}")
    return factory(**args)


def _lookup(name: str) -> Callable[..., nn.Module]:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose from: {', '.join(list_models())}")
    return _MODELS[name]


class MLP(nn.Module):
    """The classic network: 784 → hidden (ReLU) → 10."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.fc1 = nn.Linear(IMAGE_SIZE * IMAGE_SIZE, hidden)
        self.fc2 = nn.Linear(hidden, NUM_CLASSES)

    def forward(self, x):
        x = x.flatten(1)  # (B, 1, 28, 28) -> (B, 784)
        return self.fc2(self.fc1(x).relu())


@register_model
def mlp(hidden: int = 128) -> nn.Module:
    """The seed model: one hidden layer of `hidden` ReLU units (~102k parameters at 128)."""
    if hidden < 1:
        raise ValueError(f"mlp: hidden must be at least 1, got {hidden}")
    return MLP(hidden)
