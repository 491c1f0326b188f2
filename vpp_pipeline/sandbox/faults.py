"""Thread-safe fault injection for the sandbox's Leap endpoints.

A ``FaultRule`` has a ``mode``:

- ``"429"``: answer 429 with a ``Retry-After`` header (``retry_after_seconds``) and ``{"message": "Too Many
  Requests"}`` (an API-gateway style body: Leap documents no 429 envelope);
- ``"500"`` / ``"503"``: answer with the endpoint family's error envelope (meters family 500: the plain,
  unquoted string ``An error happened whilst processing your request``);
- ``"slow"``: wait ``delay_seconds`` and then answer normally;
- ``"malformed"``: answer 200 with a broken body: ``malformed_body`` ``"truncated"`` (cut-off JSON, the
  default), ``"html"`` (an HTML error page) or ``"schema"`` (valid JSON of the wrong shape).

It fires either on the next ``count`` matching requests, or on each matching request with ``probability``
(drawn from ``random.Random(seed)``, so runs are reproducible), or, with neither, on every matching request.
``path_prefix`` limits it to paths starting with that prefix. Rules are checked in order; the first that fires
wins. ``/_sandbox/...`` admin paths are never faulted.

JSON form (``PUT /_sandbox/faults``): one rule object, a list of them, or ``{"rules": [...]}``, e.g.
``{"mode": "429", "count": 2, "retry_after_seconds": 1, "path_prefix": "/v2/dispatch"}``.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

FAULT_MODES = ("429", "500", "503", "slow", "malformed")
MALFORMED_BODIES = ("truncated", "html", "schema")


@dataclass
class FaultRule:
    """One fault rule; see the module docstring. ``injected`` counts how often it fired."""

    mode: str
    probability: float | None = None
    count: int | None = None
    path_prefix: str | None = None
    retry_after_seconds: int = 1
    delay_seconds: float = 1.0
    seed: int = 0
    malformed_body: str = "truncated"
    injected: int = 0
    _rng: random.Random = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.mode = str(self.mode)
        if self.mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {', '.join(FAULT_MODES)}; got {self.mode!r}")
        if self.probability is not None and not (
            isinstance(self.probability, int | float)
            and not isinstance(self.probability, bool)
            and 0 <= self.probability <= 1
        ):
            raise ValueError(f"probability must be a number in [0, 1]; got {self.probability!r}")
        if self.count is not None and (
            not isinstance(self.count, int) or isinstance(self.count, bool) or self.count < 0
        ):
            raise ValueError(f"count must be a non-negative integer; got {self.count!r}")
        if self.probability is not None and self.count is not None:
            raise ValueError("give either probability or count, not both")
        if self.path_prefix is not None and not (
            isinstance(self.path_prefix, str) and self.path_prefix.startswith("/")
        ):
            raise ValueError(
                f"path_prefix must be a string starting with '/'; got {self.path_prefix!r}"
            )
        if not isinstance(self.retry_after_seconds, int) or self.retry_after_seconds < 0:
            raise ValueError(
                f"retry_after_seconds must be a non-negative integer; got {self.retry_after_seconds!r}"
            )
        if not isinstance(self.delay_seconds, int | float) or self.delay_seconds < 0:
            raise ValueError(
                f"delay_seconds must be a non-negative number; got {self.delay_seconds!r}"
            )
        if self.malformed_body not in MALFORMED_BODIES:
            raise ValueError(
                f"malformed_body must be one of {', '.join(MALFORMED_BODIES)}; got {self.malformed_body!r}"
            )
        self._rng = random.Random(self.seed)

    @classmethod
    def from_dict(cls, data: dict) -> FaultRule:
        if not isinstance(data, dict):
            raise ValueError(f"a fault rule must be a JSON object; got {type(data).__name__}")
        allowed = {
            "mode",
            "probability",
            "count",
            "path_prefix",
            "retry_after_seconds",
            "delay_seconds",
            "seed",
            "malformed_body",
        }
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(
                f"unknown fault rule field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
            )
        if "mode" not in data:
            raise ValueError("a fault rule needs a 'mode'")
        return cls(**data)

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "probability": self.probability,
            "count": self.count,
            "path_prefix": self.path_prefix,
            "retry_after_seconds": self.retry_after_seconds,
            "delay_seconds": self.delay_seconds,
            "seed": self.seed,
            "malformed_body": self.malformed_body,
            "injected": self.injected,
        }

    def _fires(self, path: str) -> bool:
        if self.path_prefix and not path.startswith(self.path_prefix):
            return False
        if self.count is not None:
            if self.count <= 0:
                return False
            self.count -= 1
            return True
        if self.probability is not None:
            return self._rng.random() < self.probability
        return True


class FaultInjector:
    """The set of active fault rules. Safe to configure from tests while the server thread serves requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self.history: list[dict] = []

    def set(self, mode: str, **options) -> FaultRule:
        """Replace all rules with one: ``set("429", count=2, retry_after_seconds=1)``."""
        rule = FaultRule(mode=mode, **options)
        with self._lock:
            self._rules = [rule]
        return rule

    def add(self, mode: str, **options) -> FaultRule:
        """Add a rule after the existing ones."""
        rule = FaultRule(mode=mode, **options)
        with self._lock:
            self._rules.append(rule)
        return rule

    def configure(self, config: dict | list) -> list[FaultRule]:
        """Replace all rules from JSON: a rule object, a list of rule objects, or ``{"rules": [...]}``."""
        if isinstance(config, dict) and "rules" in config:
            config = config["rules"]
        items = config if isinstance(config, list) else [config]
        rules = [FaultRule.from_dict(item) for item in items]
        with self._lock:
            self._rules = rules
        return rules

    def clear(self) -> None:
        with self._lock:
            self._rules = []

    @property
    def rules(self) -> list[dict]:
        with self._lock:
            return [r.to_dict() for r in self._rules]

    def pick(self, path: str) -> FaultRule | None:
        """The rule that fires for a request to ``path`` (consuming a count), or None."""
        with self._lock:
            for rule in self._rules:
                if rule._fires(path):
                    rule.injected += 1
                    self.history.append({"path": path, "mode": rule.mode})
                    return rule
        return None
