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


class FieldErrors(ValueError):
    """Raised by a model validator for problems that belong to particular fields: `problems` is a list of
    (location, message), the location relative to the model being validated, e.g. `("categories", 2, "id")`.
    `validate()` reports each at its own field and line instead of at the model's."""

    def __init__(self, problems: list[tuple[tuple, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{_dotted(loc)}: {msg}" for loc, msg in problems))


def _check_duplicate_keys(node: yaml.Node | None, source: str, path: tuple = ()) -> None:
    """YAML mappings with a key given twice are an error (PyYAML would silently keep the last one)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k.value)
            line = k.start_mark.line + 1
            if key in seen:
                raise ConfigError([f"{source}:{line}: {_dotted(path + (key,))}: duplicate key {key!r} "
                                   f"(first given on line {seen[key]})"])
            seen[key] = line
            _check_duplicate_keys(v, source, path + (key,))
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _check_duplicate_keys(v, source, path + (i,))


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
    _check_duplicate_keys(node, source)
    return data, (_line_map(node) if node is not None else {})


def validate(model: type[M], data: Any, lines: dict[tuple, int], source: str, context: dict | None = None) -> M:
    """Validate `data` against `model`; each error names the file, the nearest line and the field."""
    if data is None:
        raise ConfigError([f"{source}:1: (document): the file is empty"])
    try:
        return model.model_validate(data, context=context)
    except ValidationError as e:
        problems = []

        def add(loc: tuple, msg: str) -> None:
            line = 1
            for k in range(len(loc), -1, -1):
                if loc[:k] in lines:
                    line = lines[loc[:k]]
                    break
            problems.append(f"{source}:{line}: {_dotted(loc)}: {msg}")

        for err in e.errors():
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, FieldErrors):
                for loc, msg in cause.problems:
                    add(tuple(err["loc"]) + tuple(loc), msg)
                continue
            add(tuple(err["loc"]), err["msg"].removeprefix("Value error, "))
        raise ConfigError(problems) from None


def read_text(p: Path) -> str:
    """A user file's text; unreadable or non-UTF-8 files are a ConfigError naming the file."""
    try:
        return p.read_text("utf-8")
    except OSError as e:
        raise ConfigError([f"{p}: cannot read: {e.strerror or e}"]) from None
    except UnicodeDecodeError as e:
        line = e.object[:e.start].count(b"\n") + 1
        raise ConfigError([f"{p}:{line}: not UTF-8 text ({e.reason} at byte {e.start}); save the file as UTF-8"]) \
            from None


def load_model_file(model: type[M], path: str | Path, context: dict | None = None) -> M:
    """Read a YAML file and validate it into `model`."""
    p = Path(path)
    text = read_text(p)
    data, lines = load_yaml_text(text, str(p))
    return validate(model, data, lines, str(p), context=context)


__all__ = ["ConfigError", "FieldErrors", "read_text", "load_yaml_text", "validate", "load_model_file"]
