"""Guard: the public checking API (prompt harm, response harm, refusal, prompt attack)."""

from .core import Enforcement, Guard, Thresholds
from .policy import Policy as Policy
from .verdict import Verdict

__all__ = ["Enforcement", "Guard", "Policy", "Thresholds", "Verdict"]
