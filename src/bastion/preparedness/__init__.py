"""Preparedness: framework profiles (YAML), the scorecard and the deployment gate."""

from bastion.yamlsrc import ConfigError

from .evidence import CategoryEvidence, Example, RunEvidence
from .profile import DEFAULT_PROFILE, LEVELS, Profile, builtin_profiles, load_profile
from .safeguards import SafeguardsReport, load_safeguards
from .scorecard import EXIT_CODES, Scorecard, parse_duration, score
from .stats import two_proportion_p, wilson

__all__ = ["CategoryEvidence", "Example", "RunEvidence", "DEFAULT_PROFILE", "LEVELS", "Profile",
           "builtin_profiles", "load_profile", "SafeguardsReport", "load_safeguards", "EXIT_CODES", "Scorecard",
           "parse_duration", "score", "two_proportion_p", "wilson", "ConfigError"]
