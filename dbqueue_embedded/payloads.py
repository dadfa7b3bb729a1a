"""The JSON the queue stores: arguments and return values."""

import json
import re
from typing import Any

from django.utils.json import normalize_json

# A NUL character as JSON writes it: an escape preceded by an even number of
# backslashes (an odd one would be an escaped backslash followed by "u0000").
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def encode(value: Any) -> str:
    """Encode a value for storage, or raise TypeError/ValueError.

    ``normalize_json`` raises the same ``TypeError`` Django's own backends do
    for unsupported types; ``json.dumps`` then refuses what JSON cannot hold
    (NaN and infinities). Strings with a NUL character are refused too:
    PostgreSQL cannot store them in JSON, so on either database they fail
    here, with a clear error, rather than in the statement that stores them.
    """
    text = json.dumps(normalize_json(value), allow_nan=False, separators=(",", ":"))
    if "\\u0000" in text and _NUL.search(text):
        raise ValueError(
            "A string contains a NUL character (\\x00), which the queue cannot "
            "store (PostgreSQL's JSON cannot hold it)."
        )
    return text


def round_trip(value: Any) -> Any:
    """The value as the task will receive it, after a trip through JSON.

    JSON turns tuples into lists and integer dict keys into strings; callers
    see that at once rather than in the worker. Raises like ``encode()``.
    """
    if not value and isinstance(value, tuple | list | dict):
        return type(value)() if isinstance(value, dict | list) else []
    return json.loads(encode(value))
