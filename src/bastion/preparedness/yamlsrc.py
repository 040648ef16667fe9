"""Load user YAML into Pydantic models, with errors that name the file, the line and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A user file is unreadable or invalid. `str()` gives one line per problem: `file:line: field: message`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _line_map(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map every key path in a composed YAML document to its 1-based line."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k.value)
            out[path + (key,)] = k.start_mark.line + 1
            _line_map(v, path + (key,), out)
            # the value's own nested paths resolve through the recursion; keep the key's line for the key
            out[path + (key,)] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out[path + (i,)] = v.start_mark.line + 1
            _line_map(v, path + (i,), out)
    return out


def _dotted(loc: tuple) -> str:
    s = ""
    for part in loc:
        if isinstance(part, int):
            s += f"[{part}]"
        else:
            s += ("." if s else "") + str(part)
    return s or "(document)"


def load_yaml_text(text: str, source: str) -> tuple[Any, dict[tuple, int]]:
    """Parse YAML text; return (data, line map). Syntax errors become a ConfigError with the line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 0
        raise ConfigError([f"{source}:{line}: YAML syntax error: {e.problem or e}"]) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"{source}: YAML error: {e}"]) from None
    return data, (_line_map(node) if node is not None else {})


def validate(model: type[M], data: Any, lines: dict[tuple, int], source: str, context: dict | None = None) -> M:
    """Validate `data` against `model`; each error names the file, the nearest line and the field."""
    if data is None:
        raise ConfigError([f"{source}:1: (document): the file is empty"])
    try:
        return model.model_validate(data, context=context)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = tuple(err["loc"])
            line = 1
            for k in range(len(loc), -1, -1):
                if loc[:k] in lines:
                    line = lines[loc[:k]]
                    break
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{source}:{line}: {_dotted(loc)}: {msg}")
        raise ConfigError(problems) from None


def load_model_file(model: type[M], path: str | Path, context: dict | None = None) -> M:
    """Read a YAML file and validate it into `model`."""
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except OSError as e:
        raise ConfigError([f"{p}: cannot read: {e.strerror or e}"]) from None
    data, lines = load_yaml_text(text, str(p))
    return validate(model, data, lines, str(p), context=context)


__all__ = ["ConfigError", "load_yaml_text", "validate", "load_model_file"]
