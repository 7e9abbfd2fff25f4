"""Every field of every settings dataclass, of every model's arguments and of every record mnistlab reads back is
declared once (`mnistlab.validation`): whatever value it is given, it is accepted when the declaration allows it and
otherwise refused by one line naming the field, never by another exception."""

import argparse
import dataclasses
import math
import typing
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mnistlab
from mnistlab.cli._args import bounded
from mnistlab.config import (
    ExportConfig,
    FinetuneConfig,
    PlotOptions,
    PredictOptions,
    ServeOptions,
    TrainConfig,
    check_value,
    json_schema,
    rule,
)
from mnistlab.errors import SchemaError
from mnistlab.records import CHECKPOINT, EXPORT, METRICS
from mnistlab.validation import Bool, Choice, Json, MapOf, Nullable, Range, Text

CONFIGS = [TrainConfig, FinetuneConfig, PredictOptions, ExportConfig, ServeOptions, PlotOptions]
REQUIRED = {"base": "runs/base", "images": "digits", "out": "runs/mine"}  # FinetuneConfig's fields without default
FIELDS = [(owner, f.name) for owner in CONFIGS for f in dataclasses.fields(owner)]
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# What a caller from outside may pass: None, bools, huge and negative ints, NaN and infinities, text, containers.
HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from([2**64, -(2**64), 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([math.nan, math.inf, -math.inf, 1e308]),
    st.text(max_size=12), st.sampled_from(["", "5", "1e3", "nan", "cuda:0", "adam", "\ud800", "a\nb", "x" * 5000]),
    st.binary(max_size=4), st.lists(st.integers(), max_size=3), st.tuples(st.integers()),
    st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), st.one_of(st.integers(), st.none()), max_size=3),
    st.builds(object),
)


def valid(field) -> st.SearchStrategy:
    """Values that the field type `field` allows, read from the declaration itself."""
    if isinstance(field, Nullable):
        return st.one_of(st.none(), valid(field.inner))
    if isinstance(field, Bool):
        return st.booleans()
    if isinstance(field, Choice):
        return st.sampled_from(field.values) | (st.from_regex(field.pattern, fullmatch=True) if field.pattern
                                                else st.nothing())
    if isinstance(field, Range):
        if field.integer:
            return st.integers(min_value=None if field.low is None else math.ceil(field.low) + field.low_open,
                               max_value=None if field.high is None else math.floor(field.high) - field.high_open)
        return st.floats(min_value=field.low, max_value=field.high, exclude_min=field.low_open,
                         exclude_max=field.high_open, allow_nan=False, allow_infinity=False)
    if isinstance(field, Text):
        return st.text(max_size=field.max_length or 50)
    if isinstance(field, MapOf) and isinstance(field.value, Json):
        return st.dictionaries(st.from_regex(r"[a-z_]{1,10}", fullmatch=True), st.integers() | st.text(max_size=5),
                               max_size=3)
    raise AssertionError(f"no strategy for {field!r}: add one")


def build(owner: type, name: str, value: object):
    return owner(**{**{k: v for k, v in REQUIRED.items() if owner is FinetuneConfig}, name: value})


def of_declared_type(owner: type, name: str, value: object) -> bool:
    """Whether `value` is of the type `owner.name` is annotated with: read from the annotation, not the engine."""
    hint = typing.get_type_hints(owner)[name]
    args = typing.get_args(hint)
    if value is None:
        return type(None) in args
    base = next((a for a in args if a is not type(None)), hint)
    if base is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, base)


@pytest.mark.parametrize("owner, name", FIELDS, ids=[f"{o.__name__}.{n}" for o, n in FIELDS])
@FAST
@given(value=HOSTILE)
def test_any_value_is_accepted_as_declared_or_refused_in_one_line_naming_the_field(owner, name, value):
    config = build(owner, name, value)
    try:
        config.validate()
    except ValueError as e:
        message = str(e)
        assert message.startswith(f"{name}: ") or message.startswith(f"{name}["), message
        assert "\n" not in message and len(message) < 300, message
        return
    assert of_declared_type(owner, name, value), f"{owner.__name__}.{name} accepted {value!r}"


@pytest.mark.parametrize("owner, name", FIELDS, ids=[f"{o.__name__}.{n}" for o, n in FIELDS])
@FAST
@given(data=st.data())
def test_every_value_the_declaration_allows_is_accepted(owner, name, data):
    build(owner, name, data.draw(valid(rule(owner, name)))).validate()


def test_a_settings_type_is_checked_not_only_its_range():
    with pytest.raises(ValueError, match=r"^model_args: must be a dict of at most 1000 entries, got None$"):
        TrainConfig(model_args=None).validate()
    with pytest.raises(ValueError, match="^model_args: must be a dict"):  # before anything is read or built
        mnistlab.train(TrainConfig(model_args=None))
    for field, value in [("epochs", True), ("lr", math.nan), ("lr", math.inf), ("seed", 2**64), ("seed", None),
                         ("compile", 1), ("data_dir", 3), ("model", None)]:
        with pytest.raises(ValueError, match=f"^{field}: "):
            TrainConfig(**{field: value}).validate()


def test_one_declaration_words_its_bounds_alike_in_a_setting_a_flag_and_a_record():
    with pytest.raises(ValueError, match="^epochs: must be a whole number from 1 to 1,000, got 0$"):
        check_value(TrainConfig, "epochs", 0)
    with pytest.raises(argparse.ArgumentTypeError, match="^must be from 1 to 1,000, got 0$"):
        bounded(TrainConfig, "epochs")("0")
    with pytest.raises(SchemaError, match="^field 'epochs' must be a whole number from 1 to 1,000, got 0$"):
        rule(TrainConfig, "epochs").check(0, "epochs")


def test_a_declaration_gives_its_json_schema():
    assert rule(TrainConfig, "epochs").json_schema() == {"type": "integer", "minimum": 1, "maximum": 1000}
    assert rule(TrainConfig, "weight_decay").json_schema() == {"type": "number", "minimum": 0,
                                                               "exclusiveMaximum": 10.0}
    assert rule(TrainConfig, "eval_every").json_schema() == {
        "anyOf": [{"type": "integer", "minimum": 1, "maximum": 1_000_000_000}, {"type": "null"}]}
    assert rule(PredictOptions, "invert").json_schema() == {"enum": ["auto", "yes", "no"]}
    schema = json_schema(ServeOptions)
    assert schema["properties"]["port"] == {"type": "integer", "minimum": 0, "maximum": 65535, "default": 8000}
    assert json_schema(FinetuneConfig)["required"] == ["base", "images", "out"]


JSON = st.recursive(st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63)
                    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=12)


def a_record(fields: dict) -> st.SearchStrategy:
    """A record that names each known field of `fields` with any JSON value, some left out."""
    return st.fixed_dictionaries({}, optional={name: JSON for name in fields})


@FAST
@given(data=st.data())
def test_any_json_record_is_read_or_refused_by_a_schema_error(data):
    for record_format in (CHECKPOINT, EXPORT):
        record = {**data.draw(a_record(record_format.fields.fields)), "format": record_format.name,
                  "format_version": record_format.version}
        try:
            record_format.check(record)
        except SchemaError as e:
            assert "\n" not in str(e)
    try:
        METRICS.check(data.draw(a_record(METRICS.fields)), "")
    except SchemaError as e:
        assert "\n" not in str(e)


@FAST
@given(value=HOSTILE)
def test_any_model_argument_is_accepted_as_declared_or_refused_naming_it(value):
    from mnistlab.models import model_arguments

    try:
        checked = model_arguments("mlp").check({"hidden": value}, "")
    except SchemaError as e:
        assert str(e).startswith("field 'hidden' must be a whole number from 1 to 16,384, got ")
        return
    assert type(checked["hidden"]) is int and 1 <= checked["hidden"] <= 16_384


def test_the_old_names_still_work_with_a_warning():
    from mnistlab import data, recipes

    with pytest.warns(DeprecationWarning, match="recipe_settings"):
        assert recipes.resolve("cnn_small") == recipes.recipe_settings("cnn_small")
    with pytest.warns(DeprecationWarning, match="DatasetSplits"):
        assert data.MNIST is data.DatasetSplits
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from mnistlab.config import Choice as SettingChoice
        from mnistlab.config import Range as SettingRange
        from mnistlab.models import Range as ModelRange
    assert SettingRange is ModelRange is Range and SettingChoice is Choice
