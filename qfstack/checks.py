"""Check results as data: what `up`, `wait` and `doctor` all report.

A `Verdict` is one check's outcome: pass, warn or fail, what was seen (the
evidence) and, when it did not pass, what to do about it. Checks return
verdicts; the CLI decides how to show them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Level = Literal["pass", "warn", "fail"]
LEVELS: tuple[Level, ...] = ("pass", "warn", "fail")


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check.

    `permanent` marks a failure that waiting cannot heal (a wrong issuer, an
    untrusted certificate): a wait ends at once instead of running out its time.
    """

    group: str
    name: str
    level: Level
    summary: str
    evidence: tuple[str, ...] = ()
    fix: str = ""
    permanent: bool = False
    # Seconds the provider asked us to stay away (a 429's Retry-After).
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.level != "fail"

    @property
    def title(self) -> str:
        return f"{self.group}: {self.name}"

    def line(self) -> str:
        """One line for a log or an error message: title, summary and fix."""
        text = f"{self.title}: {self.summary}"
        return f"{text} Fix: {self.fix}" if self.fix and not self.ok else text

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "name": self.name,
            "level": self.level,
            "summary": self.summary,
            "evidence": list(self.evidence),
            "fix": self.fix,
        }


@dataclass
class Verdicts:
    """An ordered list of verdicts with the questions asked of it."""

    items: list[Verdict] = field(default_factory=list)

    def add(self, verdict: Verdict) -> Verdict:
        self.items.append(verdict)
        return verdict

    def extend(self, verdicts: Iterable[Verdict]) -> None:
        self.items.extend(verdicts)

    @property
    def failures(self) -> list[Verdict]:
        return [v for v in self.items if v.level == "fail"]

    @property
    def ok(self) -> bool:
        return not self.failures

    def counts(self) -> dict[str, int]:
        return {level: sum(v.level == level for v in self.items) for level in LEVELS}


def worst(verdicts: Iterable[Verdict]) -> Level:
    """The most severe level among `verdicts` (pass when there are none)."""
    levels = {v.level for v in verdicts}
    return next((lv for lv in reversed(LEVELS) if lv in levels), "pass")
