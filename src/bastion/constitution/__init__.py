"""bastion.constitution: constitution files, critique -> revision (SL-CAI), AI-feedback preference labels
(RL-CAI / RLAIF) and synthetic guard training data.

>>> from bastion.constitution import default_constitution
>>> len(default_constitution().principles) >= 16
True
"""

from .label import FeedbackLabeller, letter_probs, parse_answer
from .revise import Reviser, RevisionOutcome, RevisionStep, arevise_if_flagged
from .schema import (
    Constitution,
    ConstitutionError,
    CritiqueExample,
    FeedbackExample,
    Principle,
    default_constitution,
    load_constitution,
    load_few_shot,
    parse_constitution,
)
from .sft import dpo_pairs, sft_from_helpful, sft_from_revision
from .synth import (
    Synthesizer,
    SynthFormatError,
    SynthRecord,
    extract_json_items,
    iter_synth,
    read_synth,
    validate_synth_record,
)

__all__ = [
    "Constitution", "ConstitutionError", "CritiqueExample", "FeedbackExample", "FeedbackLabeller", "Principle",
    "Reviser", "RevisionOutcome", "RevisionStep", "SynthFormatError", "SynthRecord", "Synthesizer",
    "arevise_if_flagged", "default_constitution", "dpo_pairs", "extract_json_items", "iter_synth",
    "letter_probs", "load_constitution", "load_few_shot", "parse_answer", "parse_constitution", "read_synth",
    "sft_from_helpful", "sft_from_revision", "validate_synth_record",
]
