"""Extra training data (`bastion train --extra FILE`), e.g. `bastion constitution synth` output.

The format is the constitution's synth format (see `bastion.constitution.synth.SynthRecord`): one JSON
object per line (UTF-8) with `prompt`, `response` (null for task "prompt"), `label` (the integer 1 =
disallowed or 0 = allowed; not 1.0, "1" or true), `task` ("prompt" or "response"), `category` ("S1".."S14"
or null) and `principle_id` (required: the constitution principle the row illustrates; any string for data
written by hand), optionally `source` ("synth") and `augmentation`. Blank lines are skipped; a file with no
rows is an error. `bastion train` reads every extra file before any other work, so a bad line stops it at once.
"""

from __future__ import annotations

from pathlib import Path

from bastion.constitution.synth import SynthFormatError, iter_synth

from .data import Example


def load_extra(path: Path) -> list[Example]:
    """Read an extra-data file as training examples; a bad line (or no line at all) raises ValueError naming
    file:line."""
    out: list[Example] = []
    p = Path(path)
    src = f"extra:{p.name}"
    try:
        for r in iter_synth(p, strict=True, integer_labels=True):
            if r.task == "prompt":
                out.append(Example(task="prompt", text=r.prompt, label=int(r.label), source=src, licence="user",
                                   category=r.category))
            else:
                out.append(Example(task="response", text=r.response or "", context=r.prompt, label=int(r.label),
                                   source=src, licence="user", category=r.category))
    except OSError as exc:
        raise ValueError(f"{p}: cannot read ({exc.strerror or exc})") from None
    except SynthFormatError as exc:
        raise ValueError(str(exc)) from None
    if not out:
        raise ValueError(f"{p}: no training rows (the file is empty)")
    return out
