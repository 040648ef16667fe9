"""Output-path checks shared by the commands that write files."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def out_path_problem(out: Path, inputs: Iterable[Path | str | None] = (), option: str = "--out") -> str | None:
    """Why `out` cannot be written as an output file (None when it can): it is a directory, or it is one of the
    inputs (symlinks resolved), which writing would destroy. Checked before any work is done."""
    if out.is_dir() or str(out).endswith(("/", os.sep)):
        return f"{option} {out} is a directory (it is a folder, not a file); give a file path"
    if out.exists():
        target = out.resolve()
        for i in inputs:
            if i is not None and str(i) != "-" and Path(i).exists() and Path(i).resolve() == target:
                return f"{option} {out} is the input file {i}; writing there would change the input: choose another path"
    return None
