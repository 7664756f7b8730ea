"""The errors qfstack raises, each carrying the exit code the CLI uses.

    QfstackError (1)             the operation failed
    ├── ConfigError (2)          setup.env or a flag is invalid; carries findings
    ├── ComposeError (1)         a docker compose command failed
    ├── IdentityProviderError (1)  the identity provider answered wrongly
    ├── PreflightError (1)       the host cannot run the stack (ports, engine, disk)
    ├── NotReadyError (3)        the stack was not ready before the deadline
    └── Interrupted (130)        the operator pressed Ctrl-C

Messages say what failed and what to do; they never contain a secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_READY = 3
EXIT_INTERRUPTED = 130

Level = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Finding:
    """One problem found in the configuration or the environment."""

    level: Level
    variable: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.variable}: {self.message}"
        return f"{text} Fix: {self.fix}" if self.fix else text


class QfstackError(Exception):
    """Base of every error qfstack reports to the operator."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)


class ConfigError(QfstackError):
    """The configuration cannot be used; `findings` lists every reason."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, findings: Sequence[Finding] = ()) -> None:
        super().__init__(message, details=[str(f) for f in findings])
        self.findings = list(findings)


class ComposeError(QfstackError):
    """A docker compose command failed; carries its argv, code and stderr."""

    def __init__(
        self, message: str, *, argv: Sequence[str], returncode: int, stderr: str
    ) -> None:
        super().__init__(message, details=_tail(stderr, 20))
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


class IdentityProviderError(QfstackError):
    """The identity provider could not be reached or answered wrongly."""

    def __init__(
        self, check: str, message: str, *, fix: str = "", permanent: bool = False
    ) -> None:
        super().__init__(f"{check}: {message}", details=[f"Fix: {fix}"] if fix else [])
        self.check = check
        self.detail = message
        self.fix = fix
        # True when waiting cannot heal it (a wrong issuer, an untrusted cert).
        self.permanent = permanent


@dataclass
class Pending:
    """A readiness check that had not passed when the wait ended."""

    check: str
    detail: str
    evidence: list[str] = field(default_factory=list)


class NotReadyError(QfstackError):
    """The stack did not become ready before the deadline (or cannot)."""

    exit_code = EXIT_NOT_READY

    def __init__(self, message: str, pending: Sequence[Pending]) -> None:
        details: list[str] = []
        for item in pending:
            details.append(f"{item.check}: {item.detail}")
            details.extend(f"    {line}" for line in item.evidence)
        super().__init__(message, details=details)
        self.pending = list(pending)


class PreflightError(QfstackError):
    """The host is not ready for the stack; nothing was started."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        super().__init__(
            "preflight failed; nothing was started",
            details=[str(f) for f in findings],
        )
        self.findings = list(findings)


class Interrupted(QfstackError):
    """Ctrl-C stopped a wait; says what state the stack was left in."""

    exit_code = EXIT_INTERRUPTED


def _tail(text: str, lines: int) -> list[str]:
    return [line for line in text.strip().splitlines()[-lines:] if line.strip()]
