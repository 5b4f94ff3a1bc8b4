"""A `flow doctor` verdict: what one check found (pass, warn, fail) and the report of all of them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Status(str, enum.Enum):
    """A check's verdict: fine, worth a look, or blocking (makes `flow doctor` exit non-zero)."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Check:
    """One verdict: what was checked, what was found, and what to do about it."""

    name: str
    status: Status
    message: str
    fix: str = ""
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """JSON form used by `flow doctor --json`."""
        return {"name": self.name, "status": self.status.value, "message": self.message,
                "fix": self.fix, "details": self.details}


@dataclass(frozen=True, slots=True)
class Report:
    """All verdicts of one run; ``ok`` is false when any check failed."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """True when nothing required failed (warnings allowed)."""
        return all(c.status is not Status.FAIL for c in self.checks)

    def to_json(self) -> dict:
        """JSON form used by `flow doctor --json`."""
        return {"ok": self.ok, "checks": [c.to_json() for c in self.checks]}
