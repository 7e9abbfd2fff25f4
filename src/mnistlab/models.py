"""The model registry: every model is a function registered by name.

Models take normalised images of shape (B, 1, 28, 28) and return logits (B, 10). Adding a model
is one decorated function; `create_model(name, **args)` rebuilds it from a checkpoint's config.
This module imports nothing from training or serving.

    mlp        the seed's network, 784 → 128 → 10 (~102k parameters)
    cnn        five 3×3 conv/BN/ReLU layers, two max-pools, global average pool (~140k parameters)
    cnn_small  three conv/BN/ReLU layers, the quickest way to 99% (~55k parameters)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from .data import IMAGE_SIZE, NUM_CLASSES

_MODELS: dict[str, Callable[..., nn.Module]] = {}
MAX_WIDTH = 256  # channels of a cnn's first layer: at 256 the cnn holds 9M weights; more is refused unbuilt


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


def conv_block(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    """A 3×3 convolution, then (with `pool`) a 2×2 max-pool, then batch norm and ReLU.

    Pooling first lets the norm and the ReLU work on a quarter of the pixels; the conv has no bias
    because the norm's shift replaces it.
    """
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class CNN(nn.Module):
    """Conv/BN/ReLU at 28×28, 14×14 and 7×7, widening ×2 at each pool, global average pool, dropout, linear."""

    def __init__(self, width: int = 32, dropout: float = 0.1):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            conv_block(1, w), conv_block(w, w, pool=True),  # (B, w, 14, 14)
            conv_block(w, 2 * w), conv_block(2 * w, 2 * w, pool=True),  # (B, 2w, 7, 7)
            conv_block(2 * w, 4 * w),  # (B, 4w, 7, 7)
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # (B, 4w)
                                  nn.Dropout(dropout), nn.Linear(4 * w, NUM_CLASSES))

    def forward(self, x):
        return self.head(self.features(x))


class SmallCNN(nn.Module):
    """Three conv/BN/ReLU layers (28 → 14 → 7, pooled before the norm) and one linear layer over the 7×7 maps."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.features = nn.Sequential(conv_block(1, w, pool=True), conv_block(w, 2 * w, pool=True),  # (B, 2w, 7, 7)
                                      conv_block(2 * w, 4 * w))  # (B, 4w, 7, 7)
        self.fc = nn.Linear(4 * w * (IMAGE_SIZE // 4) ** 2, NUM_CLASSES)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))  # (B, 4w·49) -> (B, 10)


@register_model
def cnn(width: int = 32, dropout: float = 0.1) -> nn.Module:
    """The strong model: channels width, 2·width and 4·width (~140k parameters at 32); train it with `best`."""
    if not 1 <= width <= MAX_WIDTH:
        raise ValueError(f"cnn: width must be from 1 to {MAX_WIDTH}, got {width}")
    if not 0 <= dropout < 1:
        raise ValueError(f"cnn: dropout must be in [0, 1), got {dropout}")
    return CNN(width, dropout)


@register_model
def cnn_small(width: int = 16) -> nn.Module:
    """The fast model: channels width, 2·width and 4·width (~55k parameters at 16); train it with `fast`."""
    if not 1 <= width <= MAX_WIDTH:
        raise ValueError(f"cnn_small: width must be from 1 to {MAX_WIDTH}, got {width}")
    return SmallCNN(width)
