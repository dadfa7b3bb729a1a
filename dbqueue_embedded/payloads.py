"""The JSON the queue stores: arguments and return values."""

import json
from typing import Any

from django.utils.json import normalize_json


def encode(value: Any) -> str:
    """Encode a value for storage, or raise TypeError/ValueError.

    ``normalize_json`` raises the same ``TypeError`` Django's own backends do
    for unsupported types; ``json.dumps`` then refuses what JSON cannot hold
    (NaN and infinities).
    """
    return json.dumps(normalize_json(value), allow_nan=False, separators=(",", ":"))


def round_trip(value: Any) -> Any:
    """The value as the task will receive it, after a trip through JSON.

    JSON turns tuples into lists and integer dict keys into strings; callers
    see that at once rather than in the worker. Raises like ``encode()``.
    """
    if not value and isinstance(value, tuple | list | dict):
        return type(value)() if isinstance(value, dict | list) else []
    return json.loads(encode(value))
