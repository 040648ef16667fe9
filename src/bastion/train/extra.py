"""Extra training data (`bastion train --extra FILE`), e.g. `bastion constitution synth` output.

The format is the constitution's synth format (see `bastion.constitution.synth.SynthRecord`): one JSON
object per line with `prompt`, `response` (or null), `label` (1 = disallowed), `task`, `category`.
"""

from __future__ import annotations

from pathlib import Path

from bastion.constitution.synth import SynthFormatError, iter_synth

from .data import Example


def load_extra(path: Path) -> list[Example]:
    """Read an extra-data file as training examples; a bad line raises ValueError naming file:line."""
    out: list[Example] = []
    src = f"extra:{Path(path).name}"
    try:
        for r in iter_synth(path, strict=True):
            if r.task == "prompt":
                out.append(Example(task="prompt", text=r.prompt, label=r.label, source=src, licence="user",
                                   category=r.category))
            else:
                out.append(Example(task="response", text=r.response or "", context=r.prompt, label=r.label,
                                   source=src, licence="user", category=r.category))
    except SynthFormatError as exc:
        raise ValueError(str(exc)) from None
    return out
