"""Bounded, strict JSON for webhook bodies: what RFC 8259 allows and nothing that breaks later.

Python's ``json`` accepts ``NaN``, ``Infinity`` and ``-Infinity``, turns ``1e400`` into ``inf``, keeps
lone UTF-16 surrogates (``"\\ud800"``) in strings, and recurses once per nesting level. Any of those,
acknowledged, either fails every later step that encodes the value (the ops store, a JSON reply, a
site command) or, for deep nesting, raises ``RecursionError`` (a 500). :func:`load_strict_json`
refuses them with a :class:`~vpp_pipeline.dispatch.notifications.NotificationError` and its reason code:

* ``NUMBER_NOT_FINITE``: ``NaN`` / ``Infinity`` literals, or a number too large for a double;
* ``JSON_TOO_DEEP``: more than ``max_depth`` nested arrays/objects (Leap's notifications use 4);
* ``STRING_NOT_UTF8``: a string or object key holding a lone surrogate (not encodable as UTF-8).

Text that is not JSON at all raises ``ValueError`` (the receiver's 400 ``BODY_NOT_JSON``).
"""

from __future__ import annotations

import json
import math
from typing import Any

from vpp_pipeline.dispatch.notifications import NotificationError

#: Leap's notifications nest 4 levels (body > recipients > timeslots > lists); 32 is generous.
DEFAULT_MAX_JSON_DEPTH = 32


def _refuse_constant(name: str) -> Any:
    raise NotificationError("NUMBER_NOT_FINITE", f"{name} is not a JSON number")


def _check_string(value: str, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise NotificationError(
            "STRING_NOT_UTF8", f"{where} holds a lone surrogate: not valid UTF-8 text"
        ) from None


def load_strict_json(body: bytes, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> Any:
    """The JSON value of ``body``; raises ``NotificationError`` for the cases in the module docstring
    and ``ValueError`` when ``body`` is not JSON (or not UTF-8)."""
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        raise NotificationError(
            "JSON_TOO_DEEP", f"nesting exceeds the parser's limit (max {max_depth} levels)"
        ) from None
    # one iterative walk over the parsed value: depth, finite numbers, encodable strings
    stack: list[tuple[Any, int, str]] = [(value, 1, "$")]
    while stack:
        node, depth, where = stack.pop()
        if isinstance(node, dict):
            if depth > max_depth:
                raise NotificationError("JSON_TOO_DEEP", f"more than {max_depth} nested levels")
            for key, item in node.items():
                _check_string(key, f"a key in {where}")
                stack.append((item, depth + 1, f"{where}.{key}"))
        elif isinstance(node, list):
            if depth > max_depth:
                raise NotificationError("JSON_TOO_DEEP", f"more than {max_depth} nested levels")
            stack.extend((item, depth + 1, f"{where}[{i}]") for i, item in enumerate(node))
        elif isinstance(node, str):
            _check_string(node, where)
        elif isinstance(node, float) and not math.isfinite(node):
            raise NotificationError("NUMBER_NOT_FINITE", f"{where!a} is out of a double's range")
    return value
