"""Option values that would spoil a run without a word: NaN or infinite floats, fractional integers.

`nan <= 0` is false, so a range check lets NaN through, and a NaN option makes every weight NaN: the run must stop
at the option. YAML and JSON config files reach the dataclasses without argparse's type conversion, so
`num_subclasses: 2.5` would arrive as a float that later code truncates to 2.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing

from hf_lelp.base.errors import UserError

WHERE = "on the command line or in the config file"


def check_option_values(options) -> None:
    """Refuse a non-finite float and a fractional integer in a dataclass of flags; a whole float given to an
    integer option (`4.0` from a config file) becomes that integer."""
    hints = _type_hints(type(options))
    for field in dataclasses.fields(options):
        if field.name in hints:
            value = getattr(options, field.name)
            checked = checked_value(field.name, value, _wants_int(hints[field.name]))
            if checked is not value:
                setattr(options, field.name, checked)


def checked_value(name: str, value, wants_int: bool, where: str = WHERE):
    """`value` (or its items) checked; a UserError names the flag, the value and the fix."""
    if isinstance(value, list | tuple):
        items = [checked_value(name, item, wants_int, where) for item in value]
        return value if all(a is b for a, b in zip(items, value)) else type(value)(items)
    if isinstance(value, bool) or not isinstance(value, float):
        return value
    if not math.isfinite(value):
        raise UserError(
            f"--{name} is {value}, but every numeric option must be a finite number: a NaN or infinite value "
            f"makes the loss and every trained weight NaN. Set --{name} to a finite number {where}."
        )
    if wants_int:
        if not value.is_integer():
            raise UserError(
                f"--{name} takes a whole number, got {value}: it would be silently truncated to {int(value)}. Set "
                f"--{name} to a whole number (e.g. {math.floor(value)} or {math.ceil(value)}) {where}."
            )
        return int(value)
    return value


def checked_config_values(parser, values: dict, path: str) -> dict:
    """A config file's values checked against the parser's int/float flags (argparse converts only strings)."""
    kinds = {action.dest: action.type for action in parser._actions}
    return {
        key: _config_value(key, value, kinds.get(key), f"in the config file {path}") for key, value in values.items()
    }


def _config_value(key: str, value, kind, where: str):
    if kind is float and isinstance(value, str):  # `temperature: "nan"`: argparse's float() would accept it
        try:
            number = float(value)
        except ValueError:
            return value  # argparse names the flag and the bad value
        checked_value(key, number, False, where)
        return value
    return checked_value(key, value, kind is int, where) if kind in (int, float) else value


@functools.cache
def _type_hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def _wants_int(hint) -> bool:
    """True for int, int | None and list[int] fields."""
    if hint is int:
        return True
    return any(_wants_int(arg) for arg in typing.get_args(hint) if arg is not type(None))
