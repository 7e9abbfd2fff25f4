"""The typed-field engine: JSON from outside (a checkpoint's config.json, a run's metrics.json), read
bounded and checked. The records themselves (which fields each file holds) are in `records.py`.

`read_json` reads a regular file of at most `max_bytes` (a FIFO or a folder is refused from its
`fstat`, never waited on) and parses strict JSON: no NaN or Infinity, no number that overflows a
float or a 64-bit integer, no nesting deeper than Python can recurse. A schema is a tree of small
field types (`Number`, `Text`, `Obj`, ...) whose `check` returns the value holding only the declared
fields, each of its declared type and range, or raises `FieldError` naming the field by its path
(`normalization.std`, `epochs[3].test_acc`). Past that check, code trusts the types.
Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import reprlib
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NoReturn

from ._io import open_regular_file
from .errors import FieldError, MissingFileError, NotRegularFileError, SchemaError

MAX_JSON_BYTES = 1 << 20  # 1 MiB: a config.json is ~2 KB, a metrics.json ~200 bytes per epoch
MAX_INT_DIGITS = 19  # a JSON integer must fit in 64 bits; a longer one is refused before int() reads it

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # control characters and lone surrogates
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # valid in JSON ("\ud800"), but no UTF-8 file or terminal takes one
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def show(value: object) -> str:
    """A short one-line repr of a value from a file, whatever its size or nesting."""
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


# --- reading -----------------------------------------------------------------------------------------------------


@contextmanager
def _opened(path: str | Path) -> Iterator[BinaryIO]:
    """`_io.open_regular_file`, its failures as one-line SchemaErrors (a FIFO is refused, never waited on)."""
    try:
        file = open_regular_file(path)
    except FileNotFoundError:
        raise MissingFileError("no such file") from None
    except NotRegularFileError as e:
        kind = e.kind if e.file_type in (stat.S_IFDIR, stat.S_IFIFO) else "a device or socket"
        raise SchemaError(f"not a regular file ({kind})") from None
    except OSError as e:
        raise SchemaError(f"cannot be read ({e.strerror})") from None
    with file:
        yield file


def read_bounded(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; `SchemaError` for anything else."""
    with _opened(path) as file:
        size = os.fstat(file.fileno()).st_size
        if size > max_bytes:  # refused before a byte is read (a sparse file may claim terabytes)
            raise SchemaError(f"too large ({size:,} bytes; at most {max_bytes:,})")
        data = file.read(max_bytes + 1)  # size can lie (a /proc file) or change: read one byte past the limit
    if len(data) > max_bytes:
        raise SchemaError(f"too large (over {max_bytes:,} bytes)")
    return data


def read_prefix(path: str | Path, size: int) -> bytes:
    """The first `size` bytes of a regular file (fewer if it is shorter); `SchemaError` for anything else."""
    with _opened(path) as file:
        return file.read(size)


def _refuse_constant(name: str) -> float:
    raise SchemaError(f"not valid JSON ({name} is not a JSON number)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise SchemaError(f"not valid JSON (number {text[:40]} overflows a float)")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise SchemaError(f"not valid JSON (integer {show(text)[1:-1]} has over {MAX_INT_DIGITS} digits)")
    return int(text)


def parse_json(data: bytes) -> object:
    """Strict JSON from bytes (UTF-8, a BOM allowed); `SchemaError` with a one-line reason."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SchemaError(f"not valid JSON (not UTF-8: {e.reason} at byte {e.start})") from None
    try:
        return json.loads(text.removeprefix("\ufeff"), parse_constant=_refuse_constant,
                          parse_float=_finite_float, parse_int=_bounded_int)
    except json.JSONDecodeError as e:
        raise SchemaError(f"not valid JSON ({e})") from None
    except RecursionError:
        raise SchemaError("not valid JSON (nested too deeply)") from None


def read_json(path: str | Path, max_bytes: int = MAX_JSON_BYTES) -> object:
    """Read and parse a JSON file from outside; `SchemaError` says what is wrong, not which file."""
    return parse_json(read_bounded(path, max_bytes))


# --- field types ---------------------------------------------------------------------------------------------------


class Field:
    """A field type: `check(value, where)` returns the value as the program may trust it."""

    @property
    def expected(self) -> str:  # completes "must be ..."
        raise NotImplementedError

    def check(self, value: object, where: str) -> object:
        raise NotImplementedError

    def fail(self, value: object, where: str) -> NoReturn:
        raise FieldError(where, f"must be {self.expected}, got {show(value)}")


def _number_text(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


@dataclass(frozen=True)
class Number(Field):
    """A finite number (or a whole number) within [low, high]; `above=True` makes low exclusive."""

    low: float | None = None
    high: float | None = None
    integer: bool = False
    above: bool = False
    null_is_nan: bool = False  # null stands for "not a number" (a diverged run's loss) and reads as NaN

    @property
    def expected(self) -> str:
        text = "a whole number" if self.integer else "a finite number"
        if self.low is not None and self.high is not None and not self.above:
            text += f" from {_number_text(self.low)} to {_number_text(self.high)}"
        else:
            if self.low is not None:
                text += f" {'>' if self.above else '≥'} {_number_text(self.low)}"
            if self.high is not None:
                text += f"{' and' if self.low is not None else ''} ≤ {_number_text(self.high)}"
        return text + (", or null" if self.null_is_nan else "")

    def check(self, value: object, where: str) -> float | int:
        if value is None and self.null_is_nan:
            return math.nan
        kind = numbers.Integral if self.integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind):
            self.fail(value, where)
        # Compare as exact numbers first: math.isfinite(10**400) would overflow.
        value = int(value) if isinstance(value, numbers.Integral) else float(value)
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(value, where)
        too_low = self.low is not None and (value <= self.low if self.above else value < self.low)
        if too_low or (self.high is not None and value > self.high):
            self.fail(value, where)
        return value if self.integer else float(value)


@dataclass(frozen=True)
class Text(Field):
    """Text of at most `max_length` characters, one line unless `one_line=False`, maybe matching a pattern."""

    max_length: int = 200
    pattern: str | None = None  # a regular expression the whole text must match
    meaning: str | None = None  # what the pattern means, for the message ("64 hex digits")
    one_line: bool = True  # no control characters (a name shown in a terminal); else only no lone surrogates

    @property
    def expected(self) -> str:
        return self.meaning or f"{'one line of ' if self.one_line else ''}text of at most {self.max_length} characters"

    def check(self, value: object, where: str) -> str:
        if (not isinstance(value, str) or len(value) > self.max_length
                or (_CONTROL if self.one_line else _SURROGATE).search(value)
                or (self.pattern and not re.fullmatch(self.pattern, value))):
            self.fail(value, where)
        return value


@dataclass(frozen=True)
class Bool(Field):
    expected = "true or false"

    def check(self, value: object, where: str) -> bool:
        if not isinstance(value, bool):
            self.fail(value, where)
        return value


@dataclass(frozen=True)
class Choice(Field):
    """One of a few values (True is not 1 here, as it is in Python)."""

    values: tuple

    @property
    def expected(self) -> str:
        return " or ".join(json.dumps(v) for v in self.values)

    def check(self, value: object, where: str) -> object:
        if not any(type(value) is type(v) and value == v for v in self.values):
            self.fail(value, where)
        return value


@dataclass(frozen=True)
class Nullable(Field):
    """null, or a value of `inner`."""

    inner: Field

    @property
    def expected(self) -> str:
        return f"{self.inner.expected}, or null"

    def check(self, value: object, where: str) -> object:
        return None if value is None else self.inner.check(value, where)


@dataclass(frozen=True)
class Obj(Field):
    """A JSON object with known fields; unknown ones are dropped, or refused when `closed`."""

    fields: Mapping[str, Field]
    required: frozenset[str] = frozenset()
    closed: bool = False
    expected = "an object"

    def check(self, value: object, where: str) -> dict:
        if not isinstance(value, dict):
            self.fail(value, where)
        out = {}
        for key, kind in self.fields.items():
            if key in value:
                out[key] = kind.check(value[key], join(where, key))
            elif key in self.required:
                raise FieldError(join(where, key), f"is missing (it must be {kind.expected})")
        if self.closed:
            unknown = sorted(k for k in value if k not in self.fields)
            if unknown:
                raise FieldError(join(where, unknown[0]), f"is unknown (known: {', '.join(self.fields) or 'none'})")
        return out


@dataclass(frozen=True)
class ListOf(Field):
    """A list of `item`s, with at least `min_length` and at most `max_length` of them."""

    item: Field
    min_length: int = 0
    max_length: int = 100_000
    what: str = "items"

    @property
    def expected(self) -> str:
        return f"a {'non-empty ' if self.min_length else ''}list of {self.what}"

    def check(self, value: object, where: str) -> list:
        if not isinstance(value, list) or not self.min_length <= len(value) <= self.max_length:
            self.fail(value, where)
        return [self.item.check(v, join(where, i)) for i, v in enumerate(value)]


@dataclass(frozen=True)
class MapOf(Field):
    """An object with any keys (each a `key` text) whose values are all `value`s."""

    value: Field
    key: Text = field(default_factory=lambda: Text(max_length=100))
    max_length: int = 1000

    @property
    def expected(self) -> str:
        return f"an object of at most {self.max_length} fields"

    def check(self, value: object, where: str) -> dict:
        if not isinstance(value, dict) or len(value) > self.max_length:
            self.fail(value, where)
        for k in value:
            self.key.check(k, join(where, k))
        return {k: self.value.check(v, join(where, k)) for k, v in value.items()}


@dataclass(frozen=True)
class Json(Field):
    """Any JSON value nested at most `max_depth` deep: a free-form setting (a path may hold any character)."""

    max_depth: int = 2
    text: Text = field(default_factory=lambda: Text(max_length=4096, one_line=False))

    @property
    def expected(self) -> str:
        return f"a JSON value nested at most {self.max_depth} deep" if self.max_depth else "a number, text or null"

    def check(self, value: object, where: str) -> object:
        return self._check(value, where, self.max_depth, value, where)

    def _check(self, value: object, where: str, depth: int, top: object, top_where: str) -> object:
        if isinstance(value, list | dict) and depth == 0:
            self.fail(top, top_where)  # name the setting, not the innermost list
        if isinstance(value, list):
            return [self._check(v, join(where, i), depth - 1, top, top_where) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {self.text.check(k, join(where, k)): self._check(v, join(where, k), depth - 1, top, top_where)
                    for k, v in value.items()}
        if isinstance(value, str):
            return self.text.check(value, where)
        if value is None or isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value)):
            return value
        self.fail(value, where)
