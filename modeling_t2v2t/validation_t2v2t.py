"""One validator for the fields of every configuration in this folder (T2V2T, X-Pool, CRET).

A failed check raises `ValueError("<Class>.<field>=<value> is invalid: <rule>.")`, so the message names the config
class, the field, the value and the rule it broke. transformers ships field validators
(`transformers.utils.type_validators.interval`, `probability`), but their messages name neither the class nor the
field, and a bound cannot be another field (`temp` in `[temp_min, temp_max]`, a token id below `vocab_size`), so
the checks are written here, once.
"""

import math

# A bound given as a string is the name of another field of the same config; its value is looked up and the message
# shows it as `name=value`.
Bound = int | float | str | None


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class ConfigValidator:
    """
    Checks the fields of one config, for use in its `__post_init__`.

    Example:

    ```python
    >>> check = ConfigValidator(self)
    >>> check.positive_int("hidden_size", "num_hidden_layers")
    >>> check.number("temp", low="temp_min", high="temp_max")  # temp_min <= temp <= temp_max
    >>> check.probability("hidden_dropout_prob")  # in [0, 1)
    ```
    """

    def __init__(self, config):
        self.config = config
        self.config_name = type(config).__name__

    def require(self, condition: bool, field: str, rule: str, shown=None) -> None:
        """Raise naming `field` and `rule` unless `condition`; `shown` replaces the value in the message (e.g. for
        a whole sub-config)."""
        if not condition:
            value = getattr(self.config, field) if shown is None else shown
            raise ValueError(f"{self.config_name}.{field}={value!r} is invalid: {rule}.")

    def _bound(self, bound: Bound) -> tuple[int | float | None, str]:
        if isinstance(bound, str):
            value = getattr(self.config, bound)
            return value, f"{bound}={value}"
        return bound, str(bound)

    def number(self, field: str, low: Bound = None, high: Bound = None, *, low_open: bool = False,
               high_open: bool = False, integer: bool = False, optional: bool = False, why: str = "") -> None:
        """
        `field` is a finite number (an `int` if `integer`; `None` too if `optional`) in the interval from `low` to
        `high` (closed unless `low_open`/`high_open`; either may be `None` for no bound, or another field's name).
        `why` is appended to the rule.
        """
        value = getattr(self.config, field)
        (low_value, low_text), (high_value, high_text) = self._bound(low), self._bound(high)
        kind = "an integer" if integer else "a number"
        if integer and low_value == 1 and not low_open and high is None:
            rule = "must be a positive integer"
        elif low is not None and high is not None:
            rule = f"must be {kind} in {'(' if low_open else '['}{low_text}, {high_text}{')' if high_open else ']'}"
        elif low is not None:
            rule = f"must be {kind} {'>' if low_open else '>='} {low_text}"
        elif high is not None:
            rule = f"must be {kind} {'<' if high_open else '<='} {high_text}"
        else:
            rule = f"must be {'an integer' if integer else 'a finite number'}"
        if optional:
            rule = "must be None or" + rule[len("must be"):]
        if why:
            rule = f"{rule} {why}"
        if optional and value is None:
            return
        valid = _is_integer(value) if integer else _is_number(value)
        if valid and low_value is not None:
            valid = value > low_value if low_open else value >= low_value
        if valid and high_value is not None:
            valid = value < high_value if high_open else value <= high_value
        self.require(valid, field, rule)

    def integer(self, field: str, low: Bound = None, high: Bound = None, **kwargs) -> None:
        """`number(..., integer=True)`: an `int` (not a bool) in the interval."""
        self.number(field, low, high, integer=True, **kwargs)

    def positive_int(self, *fields: str) -> None:
        """Each of `fields` is an `int` >= 1."""
        for field in fields:
            self.integer(field, 1)

    def positive_int_list(self, field: str) -> None:
        """`field` is a non-empty list (or tuple) of positive integers."""
        value = getattr(self.config, field)
        self.require(isinstance(value, (list, tuple)) and len(value) > 0
                     and all(_is_integer(item) and item > 0 for item in value),
                     field, "must be a non-empty list of positive integers")

    def probability(self, *fields: str) -> None:
        """Each of `fields` is a dropout-like rate in [0, 1)."""
        for field in fields:
            self.number(field, 0, 1, high_open=True)

    def boolean(self, *fields: str) -> None:
        """Each of `fields` is `True` or `False` (a string such as "false" would silently count as true)."""
        for field in fields:
            self.require(isinstance(getattr(self.config, field), bool), field, "must be True or False")

    def one_of(self, field: str, choices: tuple) -> None:
        """`field` is one of `choices`."""
        self.require(getattr(self.config, field) in choices, field, f"must be one of {choices}")

    def divides(self, field: str, dividend: str) -> None:
        """`field` divides the value of the field `dividend` (e.g. heads divide the hidden size)."""
        divisor, total = getattr(self.config, field), getattr(self.config, dividend)
        self.require(total % divisor == 0, field, f"{dividend} ({total}) must be divisible by {field}")


__all__ = ["ConfigValidator"]
