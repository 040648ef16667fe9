"""Bastion: make a large language model safe to ship.

Guard it while it runs, attack it like a red team, score it on a Preparedness-style scorecard,
and turn what you learn into alignment data.
"""

from bastion.guard import Enforcement, Guard, Policy, Thresholds, Verdict
from bastion.taxonomy import load_taxonomy

__version__ = "0.2.0"

__all__ = ["Enforcement", "Guard", "Policy", "Thresholds", "Verdict", "load_taxonomy", "__version__"]
