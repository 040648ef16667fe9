"""The guard-facing entry point: scan a model response, say whether its code is insecure, offer a fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .fixes import fix_text
from .rules import SEVERITY_RANK
from .scanner import Finding, scan_text


@dataclass(frozen=True)
class CodeShieldResult:
    """Outcome of an output check on one response.

    `insecure` is True when a finding at or above `min_severity` was found; `categories` holds the
    taxonomy codes of those findings ("S14" for code/command execution flaws, "S2" for the rest).
    `fixed_text` is the response with every verified patch applied, or None when no patch applies.
    """

    findings: tuple[Finding, ...]
    insecure: bool
    categories: tuple[str, ...]
    fixed_text: str | None = None
    diff: str = ""

    @property
    def max_severity(self) -> str | None:
        return max((f.severity for f in self.findings), key=SEVERITY_RANK.__getitem__, default=None)

    def to_dict(self) -> dict[str, Any]:
        return {"insecure": self.insecure, "categories": list(self.categories),
                "max_severity": self.max_severity, "findings": [f.to_dict() for f in self.findings],
                "fixed_text": self.fixed_text, "diff": self.diff}


def scan_response(text: str, *, language: str | None = None, min_severity: str = "medium",
                  fix: bool = True) -> CodeShieldResult:
    """Scan the code in a model response (fenced blocks, or the whole text when it is code).

    Text without code returns quickly. With `fix`, verified patches are applied to a copy of the text.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    if min_severity not in SEVERITY_RANK:
        raise ValueError(f"min_severity must be one of {', '.join(SEVERITY_RANK)}")
    findings = scan_text(text, language)
    floor = SEVERITY_RANK[min_severity]
    flagged = [f for f in findings if SEVERITY_RANK[f.severity] >= floor]
    cats = tuple(sorted({f.hazard for f in flagged}, key=lambda c: (c != "S14", c)))
    fixed, diff = None, ""
    if fix and any(f.fixable for f in findings):
        tf = fix_text(text, language)
        if tf.changed:
            fixed, diff = tf.fixed, tf.diff
    return CodeShieldResult(findings=tuple(findings), insecure=bool(flagged), categories=cats,
                            fixed_text=fixed, diff=diff)
