"""The doctor's rows: one `Check` per finding, printed as soon as it is known."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from claude_code_proxy.launcher import redact

Status = Literal["PASS", "FAIL", "WARN", "INFO", "SKIP"]


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table."""

    name: str
    status: Status
    detail: str
    fix: str = ""


def format_check(check: Check, width: int = 20) -> list[str]:
    """The row's lines: status, name, detail; the fix indented underneath."""
    lines = [f"  {check.status:<4}  {check.name:<{width}}  {check.detail}"]
    if check.fix:
        lines.append(f"  {'':<4}  {'':<{width}}  fix: {check.fix}")
    return lines


def summary(results: Sequence[Check]) -> str:
    counts = {
        status: sum(1 for c in results if c.status == status) for status in ("PASS", "FAIL", "WARN")
    }
    verdict = "problems found" if counts["FAIL"] else "all required checks passed"
    warnings = counts["WARN"]
    noun = "warning" if warnings == 1 else "warnings"
    return f"{verdict}: {counts['PASS']} passed, {counts['FAIL']} failed, {warnings} {noun}"


@dataclass
class Report:
    """Collects rows, redacting every secret the doctor knows before anything is shown."""

    secrets: list[str | None] = field(default_factory=list)
    on_row: Callable[[Check], None] | None = None
    results: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(check.status == "FAIL" for check in self.results)

    def add(self, name: str, status: Status, detail: str, fix: str = "") -> None:
        check = Check(name, status, redact(detail, self.secrets), redact(fix, self.secrets))
        self.results.append(check)
        if self.on_row is not None:
            self.on_row(check)
