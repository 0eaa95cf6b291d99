"""Small argument checks shared by the maths modules (errors name the parameter, the bad value and the fix)."""

from __future__ import annotations

import operator

from ffmrec.errors import ConfigError


def check_int(value: object, name: str, minimum: int) -> int:
    """``value`` as an ``int >= minimum``, rejecting bools and floats."""
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise ConfigError(f"`{name}` must be an integer >= {minimum}, got {value!r}; "
                          f"set it to a whole number such as {minimum}.") from None
    if value < minimum:
        raise ConfigError(f"`{name}` must be an integer >= {minimum}, got {value}; set it to {minimum} or more.")
    return value
