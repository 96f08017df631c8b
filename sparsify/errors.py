"""User-facing errors: each names what was wrong and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class SparsifyError(Exception):
    """A mistake the user can fix; the CLI prints it without a traceback."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's input: where, what value, what to do."""

    key: str
    value: Any
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.key} = {self.value!r}: {self.message}\n      fix: {self.fix}"


class ValidationError(SparsifyError):
    """Every problem found, reported together."""

    def __init__(self, problems: list[Problem], what: str = "the run") -> None:
        self.problems = list(problems)
        lines = [f"{len(self.problems)} problem(s) found in {what}:"]
        lines += [f"  {i}. {p}" for i, p in enumerate(self.problems, 1)]
        super().__init__("\n".join(lines))


class ProblemCollector:
    """Gathers problems so validation can report all of them at once."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, key: str, value: Any, message: str, fix: str) -> None:
        self.problems.append(Problem(key, value, message, fix))

    def extend(self, problems: list[Problem]) -> None:
        self.problems.extend(problems)

    def __bool__(self) -> bool:
        return bool(self.problems)

    def raise_if_any(self, what: str = "the run") -> None:
        if self.problems:
            raise ValidationError(self.problems, what)
