"""Strict parsing of numbers in text files: plain decimal notation, ASCII digits, finite.

Python's `int` and `float` accept more than a data file should hold: `int("1_0")` is 10,
`int("١")` (an Arabic-Indic digit) is 1, `float("nan")`, `float("inf")` and
`float("1e999")` are not finite, `int("9" * 30)` does not fit the int64 arrays it goes into, and other readers take "True" / "False" as 1 / 0 or
"0x1A" as 26. Every text reader of the project parses numeric fields with these
functions instead, so a malformed field is one `InputError` naming the file, the line
and the field.
"""

import math
import re
from typing import Optional

from noisylabels.errors import InputError

INT64_MIN, INT64_MAX = -2 ** 63, 2 ** 63 - 1  # integers are range-checked as floats are checked finite
# Optional sign, ASCII digits ([0-9], not \d, which matches any Unicode digit).
_INTEGER = re.compile(r"[+-]?[0-9]+")
# Optional sign, digits with an optional point (or a point and digits), optional exponent.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SHOWN = 40  # characters of a bad field shown in a message


def parse_int(text: str, path: Optional[str] = None, line: Optional[int] = None,
              field: Optional[str] = None) -> int:
    """An integer written in decimal, within the int64 range (surrounding blanks allowed);
    InputError otherwise."""
    value = text.strip(" \t\r\n")
    if not _INTEGER.fullmatch(value):
        raise InputError("expected an integer, found %r" % _shorten(text), path=path, line=line, field=field)
    number = int(value)
    if not INT64_MIN <= number <= INT64_MAX:
        raise InputError("%r is beyond the range of an int64" % _shorten(value), path=path, line=line, field=field)
    return number


def parse_float(text: str, path: Optional[str] = None, line: Optional[int] = None,
                field: Optional[str] = None) -> float:
    """A finite number in decimal notation (surrounding blanks allowed); InputError otherwise."""
    value = text.strip(" \t\r\n")
    if not _DECIMAL.fullmatch(value):
        raise InputError("expected a number, found %r" % _shorten(text), path=path, line=line, field=field)
    number = float(value)
    if not math.isfinite(number):
        raise InputError("%r is beyond the range of a float64" % _shorten(text), path=path, line=line, field=field)
    return number


def _shorten(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def format_float32(value: float) -> str:
    """Nine significant digits: a float32 (e.g. a similarity or a weight) reads back exactly."""
    return "%.9g" % value
