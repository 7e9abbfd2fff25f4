"""Training recipes: named sets of settings (optimizer, schedule, regularisation, epochs, batch, augmentation).

`classic` is the seed script's recipe and the default for the `mlp`; `best` is the most accurate
recipe measured for each model (and, where it differs, for each dataset); `fast` reaches 99% on
`cnn_small` in the fewest seconds. A recipe only fills in settings: every field can still be set on
its own (`mnistlab train --recipe best --epochs 3`), and a run's config records the recipe's name
beside the values it ran with.
This module imports no torch, so the command line can list the recipes at once.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, replace

from .config import OPTIMIZERS, SCHEDULES, TrainConfig

__all__ = ["OPTIMIZERS", "SCHEDULES", "Recipe", "CLASSIC", "RECIPES", "DEFAULT_RECIPES", "recipe_names",
           "default_recipe", "get_recipe", "recipe_settings"]


@dataclass(frozen=True)
class Recipe:
    """The settings a recipe fixes, each declared (with its bounds) in `TrainConfig`, whose defaults are
    the classic recipe."""

    optimizer: str = TrainConfig.optimizer  # adam, adamw (decoupled weight decay) or sgd (Nesterov momentum 0.9)
    lr: float = TrainConfig.lr  # the constant rate, or the peak of a one-cycle / the start of a cosine schedule
    schedule: str = TrainConfig.schedule  # constant, onecycle (warm up, then anneal) or cosine, stepped per batch
    weight_decay: float = TrainConfig.weight_decay  # on weights only: biases and norm parameters are left alone
    label_smoothing: float = TrainConfig.label_smoothing  # share of the target spread evenly over all classes
    epochs: int = TrainConfig.epochs
    batch_size: int = TrainConfig.batch_size
    augment: float = TrainConfig.augment  # strength of the random affine warp (1: ±2 px, ±10°, ±10% size); 0: none
    elastic: float = TrainConfig.elastic  # standard deviation (px) of the smooth elastic displacement; 0: none
    outlier_exposure: float = TrainConfig.outlier_exposure  # weight of the "be unsure of non-digits" loss; 0: none


CLASSIC = Recipe()
# No recipe uses outlier exposure: from the start it costs the cnn accuracy; the shipped cnn learns it in one
# more epoch from its best-recipe weights (scripts/make_pretrained.py; docs/benchmarks.md, "Not a digit").
BEST_CNN = Recipe(optimizer="adamw", lr=4e-3, schedule="onecycle", weight_decay=0.05, label_smoothing=0.1,
                  epochs=12, batch_size=128, augment=1.0)

# Each recipe is tuned per model family, and where a dataset wants other settings, per dataset: the entry
# "MODEL/DATASET" comes first, then "MODEL", then "*/DATASET", then "*" (any other model).
RECIPES: dict[str, dict[str, Recipe]] = {
    "classic": {"*": CLASSIC},
    "best": {
        "mlp": Recipe(optimizer="adamw", lr=5e-3, schedule="onecycle", weight_decay=0.05, label_smoothing=0.1,
                      epochs=30, batch_size=256, augment=0.6),
        "*": BEST_CNN,
        # Clothes are photographed upright and centred: half the warp (±1 px, ±5°, ±5%) reads them better
        # (docs/benchmarks.md, "Datasets").
        "*/fashion-mnist": replace(BEST_CNN, augment=0.5),
    },
    "fast": {"*": Recipe(optimizer="adamw", lr=1e-2, schedule="onecycle", weight_decay=0.01, epochs=1,
                         batch_size=128)},
}

# What `mnistlab train --model NAME` uses when no recipe is named; other models get `classic`.
DEFAULT_RECIPES = {"mlp": "classic", "cnn": "best", "cnn_small": "fast"}


def recipe_names() -> list[str]:
    return list(RECIPES)


def default_recipe(model: str) -> str:
    """The recipe a model trains with when none is named."""
    return DEFAULT_RECIPES.get(model, "classic")


def get_recipe(name: str, model: str, dataset: str = "mnist") -> Recipe:
    """Recipe `name` as tuned for `model` on `dataset`; an unknown name raises `ValueError` listing the known ones."""
    if name not in RECIPES:
        raise ValueError(f"recipe: unknown recipe {name!r}; choose from: {', '.join(recipe_names())}")
    variants = RECIPES[name]
    return next(variants[key] for key in (f"{model}/{dataset}", model, f"*/{dataset}", "*") if key in variants)


def recipe_settings(model: str, recipe: str | None = None, *, dataset: str = "mnist", **overrides) -> dict:
    """TrainConfig settings for `model` on `dataset`: the recipe's values (the model's default recipe when
    `recipe` is None), then every override that is not None, and `recipe` set to the recipe's name."""
    name = recipe or default_recipe(model)
    settings = asdict(get_recipe(name, model, dataset))
    unknown = set(overrides) - set(settings)
    if unknown:
        raise ValueError(f"recipe: no setting named {', '.join(sorted(unknown))}; "
                         f"a recipe sets {', '.join(settings)}")
    settings.update({key: value for key, value in overrides.items() if value is not None})
    return {"recipe": name, **settings}


def resolve(model: str, recipe: str | None = None, *, dataset: str = "mnist", **overrides) -> dict:
    """Deprecated: `recipe_settings` (`resolve` also names finding a device, a data folder or a pretrained model)."""
    warnings.warn("mnistlab.recipes.resolve is now mnistlab.recipes.recipe_settings", DeprecationWarning, stacklevel=2)
    return recipe_settings(model, recipe, dataset=dataset, **overrides)
