"""The one validation engine: a value's type and bounds, declared once, and everything derived from it.

A field type (`Range`, `Text`, `Bool`, `Choice`, `Nullable`, `Obj`, `ListOf`, `MapOf`, `Json`)
checks a value (`check` returns it as the program may trust it, or raises `FieldError` naming the
field by its path: `normalization.std`, `epochs[3].test_acc`), says what a value must be in a
message, and gives its JSON-schema fragment (`json_schema`) for the HTTP API's OpenAPI description.
The same declarations check every input: a setting (`epochs: Annotated[int, Range(1, MAX_EPOCHS)]`
in `config.py`, a model's argument in `models.py`: `field_for` reads the annotation), a flag
(`cli/_args.py`), and a record read from JSON (`records.py`). A message about a Python value says
None and True, one about JSON says null and true (`python=True`). Nothing here imports torch.
"""

from __future__ import annotations

import inspect
import json
import math
import numbers
import re
import reprlib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated, Literal, NoReturn

from .errors import FieldError

__all__ = ["Field", "Range", "Text", "Bool", "Choice", "Nullable", "Obj", "ListOf", "MapOf", "Json", "field_for",
           "number_text", "show", "join"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # control characters and lone surrogates
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # valid in JSON ("\ud800"), but no UTF-8 file or terminal takes one
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NO_DEFAULT = inspect.Parameter.empty  # `field_for`'s default when a parameter or field has none


def number_text(x: float) -> str:
    """A bound as every message writes it: 1,000 for a whole number, 1e-12 or 0.5 for the others."""
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


def show(value: object) -> str:
    """A short one-line repr of a value from outside, whatever its size or nesting."""
    short = reprlib.Repr()
    short.maxstring, short.maxother, short.maxlong, short.maxlevel = 40, 40, 40, 2
    return short.repr(value)


def join(where: str, key: str | int) -> str:
    """The path of a field inside `where`: `model.args`, `epochs[3]`, `sha256["odd name"]`."""
    if isinstance(key, int):
        return f"{where}[{key}]"
    if _IDENTIFIER.fullmatch(key) and len(key) <= 64:
        return f"{where}.{key}" if where else key
    return f"{where}[{show(key)}]"  # a hostile key (a newline, a megabyte) is shown escaped and cut short


def _key_path(where: str, key: object) -> str:
    """`join` for a key that may not be text (a Python dict's): `model_args[1]`."""
    return join(where, key) if isinstance(key, str) else f"{where}[{show(key)}]"


class Field:
    """A field type: `check(value, where)` returns the value as the program may trust it."""

    def expects(self, python: bool = False) -> str:
        """What a value must be, completing "must be ..."; `python`: in Python's words (None, not null)."""
        raise NotImplementedError

    def check(self, value: object, where: str, python: bool = False) -> object:
        raise NotImplementedError

    def json_schema(self) -> dict:
        """The JSON-schema fragment of the values `check` accepts (for OpenAPI)."""
        raise NotImplementedError

    def problem(self, value: object, python: bool = False) -> str:
        return f"must be {self.expects(python)}, got {show(value)}"

    def fail(self, value: object, where: str, python: bool = False) -> NoReturn:
        raise FieldError(where, self.problem(value, python))


@dataclass(frozen=True)
class Range(Field):
    """A finite number within bounds: `Annotated[int, Range(1, 4096)]`, or in a record `Range(0, 1)`.

    `low_open` / `high_open` exclude that end; `meaning` replaces the generated description ("an
    accuracy in (0, 1]"). `integer` asks for a whole number (in an annotation, the type `int` says so).
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    meaning: str | None = None
    integer: bool = False
    null_is_nan: bool = False  # in a record, null stands for "not a number" (a diverged run's loss): read as NaN

    def contains(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def describe(self, noun: str = "") -> str:
        """`noun` and the bounds: "a whole number from 1 to 1,000", "≥ 0 and < 1" (`noun` ""); or `meaning`."""
        if self.meaning:
            return self.meaning
        low, high = (None if x is None else number_text(x) for x in (self.low, self.high))
        if low is not None and high is not None and not (self.low_open or self.high_open):
            text = f"from {low} to {high}"
        else:
            parts = ([f"{'>' if self.low_open else '≥'} {low}"] if low is not None else []) + \
                    ([f"{'<' if self.high_open else '≤'} {high}"] if high is not None else [])
            text = " and ".join(parts)
        return f"{noun} {text}".strip()

    def expects(self, python: bool = False) -> str:
        noun = "a whole number" if self.integer else ("a number" if python else "a finite number")
        return self.describe(noun) + (", or null" if self.null_is_nan and not python else "")

    def check(self, value: object, where: str, python: bool = False) -> float | int:
        if value is None and self.null_is_nan:
            return math.nan
        if isinstance(value, bool) or not isinstance(value, numbers.Integral if self.integer else numbers.Real):
            self.fail(value, where, python)
        try:  # exact comparisons first: math.isfinite(10**400) would overflow
            value = int(value) if isinstance(value, numbers.Integral) else float(value)
            if not (isinstance(value, int) or math.isfinite(value)) or not self.contains(value):
                self.fail(value, where, python)
            return value if self.integer else float(value)
        except OverflowError:  # a whole number too large for a float, where a float is meant
            self.fail(value, where, python)

    def json_schema(self) -> dict:
        schema: dict = {"type": "integer" if self.integer else "number"}
        as_json = int if self.integer else float  # a whole-number field's bounds read 9, not 9.0
        if self.low is not None:
            schema["exclusiveMinimum" if self.low_open else "minimum"] = as_json(self.low)
        if self.high is not None:
            schema["exclusiveMaximum" if self.high_open else "maximum"] = as_json(self.high)
        if self.meaning:
            schema["description"] = self.meaning
        return {"anyOf": [schema, {"type": "null"}]} if self.null_is_nan else schema


@dataclass(frozen=True)
class Text(Field):
    """Text of at most `max_length` characters (None: any), maybe matching a pattern.

    `characters`: "line" refuses control characters (a name shown in a terminal); "text" only lone
    surrogates (no UTF-8 file takes one); "any" admits what Python does (a path from `os.fsdecode`).
    """

    max_length: int | None = 200
    pattern: str | None = None  # a regular expression the whole text must match
    meaning: str | None = None  # what the pattern means, for the message ("64 hex digits")
    characters: Literal["line", "text", "any"] = "line"

    def expects(self, python: bool = False) -> str:
        if self.meaning:
            return self.meaning
        limit = f" of at most {self.max_length} characters" if self.max_length is not None else ""
        return f"{'one line of ' if self.characters == 'line' else ''}text{limit}"

    def check(self, value: object, where: str, python: bool = False) -> str:
        refused = {"line": _CONTROL, "text": _SURROGATE}.get(self.characters)
        if (not isinstance(value, str) or (self.max_length is not None and len(value) > self.max_length)
                or (refused and refused.search(value)) or (self.pattern and not re.fullmatch(self.pattern, value))):
            self.fail(value, where, python)
        return value

    def json_schema(self) -> dict:
        schema: dict = {"type": "string"}
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        if self.pattern:
            schema["pattern"] = f"^(?:{self.pattern})$"
        return schema


@dataclass(frozen=True)
class Bool(Field):
    def expects(self, python: bool = False) -> str:
        return "True or False" if python else "true or false"

    def check(self, value: object, where: str, python: bool = False) -> bool:
        if not isinstance(value, bool):
            self.fail(value, where, python)
        return value

    def json_schema(self) -> dict:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Choice(Field):
    """One of a few values (True is not 1 here, as it is in Python); `pattern` (shown as `pattern_text`)
    admits a family of texts more ("cuda:N")."""

    values: tuple
    pattern: str | None = None
    pattern_text: str = ""

    def contains(self, value: object) -> bool:
        return (any(type(value) is type(v) and value == v for v in self.values)
                or (isinstance(value, str) and bool(self.pattern) and bool(re.fullmatch(self.pattern, value))))

    def describe(self) -> str:
        """The choices for a help text or a flag's message: "auto, cpu, cuda, mps or cuda:N"."""
        return ", ".join(map(str, self.values)) + (f" or {self.pattern_text}" if self.pattern_text else "")

    def expects(self, python: bool = False) -> str:
        if python:
            return f"one of {self.describe()}"
        return " or ".join([json.dumps(v) for v in self.values] + ([self.pattern_text] if self.pattern_text else []))

    def problem(self, value: object, python: bool = False) -> str:
        return f"expected {self.expects(True)}, got {show(value)}" if python else super().problem(value)

    def check(self, value: object, where: str, python: bool = False) -> object:
        if not self.contains(value):
            self.fail(value, where, python)
        return value

    def json_schema(self) -> dict:
        listed = {"enum": list(self.values)}
        return {"anyOf": [listed, {"type": "string", "pattern": f"^(?:{self.pattern})$"}]} if self.pattern else listed


@dataclass(frozen=True)
class Nullable(Field):
    """None (JSON's null), or a value of `inner`."""

    inner: Field

    def expects(self, python: bool = False) -> str:
        return f"{self.inner.expects(python)}, or {'None' if python else 'null'}"

    def check(self, value: object, where: str, python: bool = False) -> object:
        if value is None:
            return None
        try:
            return self.inner.check(value, where, python)
        except FieldError as e:
            if e.field != where:  # a problem inside the value (an object's field) is named there
                raise
            self.fail(value, where, python)

    def json_schema(self) -> dict:
        return {"anyOf": [self.inner.json_schema(), {"type": "null"}]}


@dataclass(frozen=True)
class Obj(Field):
    """An object with known fields; unknown ones are dropped, or refused when `closed`."""

    fields: Mapping[str, Field]
    required: frozenset[str] = frozenset()
    closed: bool = False

    def expects(self, python: bool = False) -> str:
        return "a dict" if python else "an object"

    def check(self, value: object, where: str, python: bool = False) -> dict:
        if not isinstance(value, dict):
            self.fail(value, where, python)
        out = {}
        for key, kind in self.fields.items():
            if key in value:
                out[key] = kind.check(value[key], join(where, key), python)
            elif key in self.required:
                raise FieldError(join(where, key), f"is missing (it must be {kind.expects(python)})")
        if self.closed:
            unknown = sorted(str(k) for k in value if k not in self.fields)
            if unknown:
                raise FieldError(join(where, unknown[0]), f"is unknown (known: {', '.join(self.fields) or 'none'})")
        return out

    def json_schema(self) -> dict:
        schema = {"type": "object", "properties": {k: f.json_schema() for k, f in self.fields.items()}}
        if self.required:
            schema["required"] = sorted(self.required)
        if self.closed:
            schema["additionalProperties"] = False
        return schema


@dataclass(frozen=True)
class ListOf(Field):
    """A list of `item`s, with at least `min_length` and at most `max_length` of them."""

    item: Field
    min_length: int = 0
    max_length: int = 100_000
    what: str = "items"

    def expects(self, python: bool = False) -> str:
        return f"a {'non-empty ' if self.min_length else ''}list of {self.what}"

    def check(self, value: object, where: str, python: bool = False) -> list:
        if not isinstance(value, list) or not self.min_length <= len(value) <= self.max_length:
            self.fail(value, where, python)
        return [self.item.check(v, join(where, i), python) for i, v in enumerate(value)]

    def json_schema(self) -> dict:
        return {"type": "array", "items": self.item.json_schema(), "minItems": self.min_length,
                "maxItems": self.max_length}


@dataclass(frozen=True)
class MapOf(Field):
    """An object with any keys (each a `key` text) whose values are all `value`s."""

    value: Field
    key: Text = field(default_factory=lambda: Text(max_length=100))
    max_length: int = 1000

    def expects(self, python: bool = False) -> str:
        return f"a dict of at most {self.max_length} entries" if python else \
            f"an object of at most {self.max_length} fields"

    def check(self, value: object, where: str, python: bool = False) -> dict:
        if not isinstance(value, dict) or len(value) > self.max_length:
            self.fail(value, where, python)
        for k in value:
            self.key.check(k, _key_path(where, k), python)
        return {k: self.value.check(v, join(where, k), python) for k, v in value.items()}

    def json_schema(self) -> dict:
        return {"type": "object", "additionalProperties": self.value.json_schema(), "maxProperties": self.max_length}


@dataclass(frozen=True)
class Json(Field):
    """Any JSON value nested at most `max_depth` deep: a free-form setting (a path may hold any character)."""

    max_depth: int = 2
    text: Text = field(default_factory=lambda: Text(max_length=4096, characters="text"))

    def expects(self, python: bool = False) -> str:
        return f"a JSON value nested at most {self.max_depth} deep" if self.max_depth else "a number, text or null"

    def check(self, value: object, where: str, python: bool = False) -> object:
        return self._check(value, where, self.max_depth, value, where, python)

    def _check(self, value: object, where: str, depth: int, top: object, top_where: str, python: bool) -> object:
        if isinstance(value, list | dict) and depth == 0:
            self.fail(top, top_where, python)  # name the setting, not the innermost list
        if isinstance(value, list):
            return [self._check(v, join(where, i), depth - 1, top, top_where, python) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {self.text.check(k, _key_path(where, k), python):
                    self._check(v, _key_path(where, k), depth - 1, top, top_where, python) for k, v in value.items()}
        if isinstance(value, str):
            return self.text.check(value, where, python)
        if value is None or isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value)):
            return value
        self.fail(value, where, python)

    def json_schema(self) -> dict:
        return {}  # any JSON value


def field_for(hint: object, default: object = NO_DEFAULT, text: Text | None = None) -> Field:
    """The field type a type hint declares: `Annotated[int, Range(1, 4096)]`, `float | None`, `Literal["a", "b"]`.

    Without a hint, the default's type stands for it. A plain `str` is `text` (default: any text), a
    `dict` an object of JSON values, any other type a JSON value nested at most 2 deep.
    """
    text = text if text is not None else Text(max_length=None, characters="any")
    declared = None
    if typing.get_origin(hint) is Annotated:
        hint, *extras = typing.get_args(hint)
        declared = next((x for x in extras if isinstance(x, Field)), None)
    if hint is None and default is not NO_DEFAULT and default is not None:
        hint = type(default)
    args = typing.get_args(hint)
    if type(None) in args and len(args) == 2:  # Optional[X], X | None
        inner = next(a for a in args if a is not type(None))
        return Nullable(field_for(inner if declared is None else Annotated[inner, declared], text=text))
    if isinstance(declared, Range) and hint in (int, float):
        return replace(declared, integer=hint is int)
    if declared is not None:
        return declared
    if hint is bool:
        return Bool()
    if hint in (int, float):
        return Range(integer=hint is int)
    if hint is str:
        return text
    if typing.get_origin(hint) is Literal:
        return Choice(args)
    if hint is dict or typing.get_origin(hint) is dict:
        return MapOf(Json())
    return Json(max_depth=2)
