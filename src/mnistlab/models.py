"""The model registry: every model is a function registered by name.

Models take normalised images of shape (B, 1, 28, 28) and return logits (B, 10). Adding a model
is one decorated function; `create_model(name, **args)` rebuilds it from a checkpoint's config.
Its arguments are checked before it is built, from its signature: each one's type, and the
bounds it declares with `Annotated[int, Range(1, 65536)]`. Installed packages add models through
the `mnistlab.models` entry-point group, each loaded only when its name is asked for.
This module imports nothing from training or serving.

    mlp        the seed's network, 784 → 128 → 10 (~102k parameters)
    cnn        five 3×3 conv/BN/ReLU layers, two max-pools, global average pool (~140k parameters)
    cnn_small  three conv/BN/ReLU layers, the quickest way to 99% (~55k parameters)
"""

from __future__ import annotations

import importlib.metadata
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from torch import nn

from .errors import FieldError, ModelError, one_line
from .limits import IMAGE_SIZE, MAX_HIDDEN, MAX_WIDTH, NUM_CLASSES
from .validation import Obj, Range, Text, field_for

ENTRY_POINT_GROUP = "mnistlab.models"  # [project.entry-points."mnistlab.models"] name = "package.module:factory"

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: make `fn` available to `create_model` under its own name."""
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """The registered models and those that installed packages offer (listed, not yet loaded)."""
    return sorted(set(_MODELS) | {entry.name for entry in _plugin_entry_points()})


def model_defaults(name: str) -> dict:
    """The keyword arguments of model `name` with their default values."""
    params = inspect.signature(_lookup(name)).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def model_arguments(name: str) -> Obj:
    """The schema of model `name`'s arguments (types and bounds from its signature); unknown ones are refused."""
    factory = _lookup(name)
    try:  # a plugin's hints may name things that exist only for type checkers: then they are not used
        hints = typing.get_type_hints(factory.__init__ if inspect.isclass(factory) else factory, include_extras=True)
    except Exception:
        hints = {}
    params = [p for p in inspect.signature(factory).parameters.values()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    # A text argument is recorded in config.json and shown in messages: one short line.
    return Obj({p.name: field_for(hints.get(p.name), p.default, text=Text()) for p in params},
               required=frozenset(p.name for p in params if p.default is inspect.Parameter.empty), closed=True)


@dataclass(frozen=True)
class ModelSummary:
    """One row of `mnistlab models`: a model's name, size at its defaults, arguments and first docstring line."""

    name: str
    parameters: int
    arguments: dict  # keyword → default
    description: str


def summarize_model(name: str) -> ModelSummary:
    """Model `name` built at its defaults and described; `ModelError` if it cannot be (a broken plugin)."""
    factory = _lookup(name)  # also loads a model from a plugin package
    try:
        parameters = sum(p.numel() for p in create_model(name).parameters())
    except ModelError:
        raise
    except Exception as e:  # a plugin's model is someone else's code: whatever it raises, it cannot be built
        raise ModelError(one_line(str(e))) from None
    return ModelSummary(name, parameters, model_defaults(name), (inspect.getdoc(factory) or "").split("\n")[0])


def create_model(name: str, **args) -> nn.Module:
    """Build a registered model; an unknown name or a bad argument raises `ModelError` (a `ValueError`)."""
    factory = _lookup(name)
    try:
        args = model_arguments(name).check(args, "")
    except FieldError as e:
        raise ModelError(f"model {name!r}: argument '{e.field}' {e.problem}") from None
    return factory(**args)


def _plugin_entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _lookup(name: str) -> Callable[..., nn.Module]:
    if name in _MODELS:
        return _MODELS[name]
    for entry in _plugin_entry_points():
        if entry.name == name:
            return _load_plugin(entry)
    raise ModelError(f"unknown model {name!r}; choose from: {', '.join(list_models())}")


def _load_plugin(entry: importlib.metadata.EntryPoint) -> Callable[..., nn.Module]:
    """Import a plugin's factory and register it under its entry point's name."""
    dist = getattr(entry, "dist", None)
    origin = f"{entry.value}" + (f" (package {dist.name})" if dist is not None else "")
    try:
        factory = entry.load()
    except Exception as e:  # a plugin is someone else's code: whatever it raises, it failed to load
        raise ModelError(f"model {entry.name!r}: plugin {origin} failed to load: "
                         f"{one_line(f'{type(e).__name__}: {e}')}") from None
    if not callable(factory):
        raise ModelError(f"model {entry.name!r}: plugin {origin} is not a function or class")
    _MODELS[entry.name] = factory
    return factory


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
def mlp(hidden: Annotated[int, Range(1, MAX_HIDDEN)] = 128) -> nn.Module:
    """The seed model: one hidden layer of `hidden` ReLU units (~102k parameters at 128)."""
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
