"""Extra training data (`bastion train --extra FILE`), e.g. constitution-synthesised examples.

Format, one JSON object per line: {"prompt": str, "response": str|null, "label": 0|1,
"task": "prompt"|"response", "category": "S1".."S14"|null, ...}. Label 1 = disallowed/harmful.
"""

from __future__ import annotations

import json
from pathlib import Path

from .data import Example


def load_extra(path: Path) -> list[Example]:
    out: list[Example] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                task = r.get("task") or ("response" if r.get("response") else "prompt")
                label = int(r["label"])
                if task not in ("prompt", "response") or label not in (0, 1) or not isinstance(r["prompt"], str):
                    raise ValueError("bad task/label/prompt")
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: invalid extra training record ({exc})") from None
            src = f"extra:{Path(path).name}"
            if task == "prompt":
                out.append(Example(task="prompt", text=r["prompt"], label=label, source=src, licence="user",
                                   category=r.get("category")))
            else:
                out.append(Example(task="response", text=r["response"], context=r["prompt"], label=label,
                                   source=src, licence="user", category=r.get("category")))
    return out
