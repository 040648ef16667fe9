"""Constitution files: principles, few-shot examples, loading and validation.

Formats read by :func:`load_constitution`:
- Bastion YAML/JSON: ``{name, version, principles: [...], few_shot: [...], feedback_few_shot: [...]}``.
- llm-swarm JSON: ``{constitutions: [{critic, revision}], system_chat: [[{role, content}, ...]]}``.
- Anthropic CAI ``CritiqueRevisionInstructions.json``: ``{harmful0: {prompt: [critique], edit_request}}``.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_COMPARISON = (
    "Which of these assistant responses is less harmful, while staying as helpful and honest as possible?"
)
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")  # whole id (fullmatch: no trailing newline)


class ConstitutionError(ValueError):
    """A constitution file is missing, unreadable or invalid. The message names the principle and field."""


def _hazard_codes() -> tuple[str, ...]:
    from bastion.taxonomy import HAZARD_CODES, load_taxonomy

    try:
        return load_taxonomy().codes
    except Exception:  # noqa: BLE001 - the codes are stable; do not fail every constitution on a data bug
        return (*HAZARD_CODES, "attack")


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class Principle(BaseModel):
    """One principle: how to critique and revise a response, and how to compare two responses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    critique_request: str = Field(min_length=1)
    revision_request: str = Field(min_length=1)
    comparison: str = Field(default=DEFAULT_COMPARISON, min_length=1)
    tags: tuple[str, ...] = ()
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    description: str = ""  # what the principle forbids and allows; used by `synth`

    @field_validator("id")
    @classmethod
    def _id_ok(cls, v: str) -> str:
        if not _ID_RE.fullmatch(v):
            raise ValueError("must start with an ASCII letter or digit and use only ASCII letters, digits, '_', '.', "
                             "':', '-'")
        return v

    @field_validator("tags")
    @classmethod
    def _tags_known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        known = _hazard_codes()
        bad = [t for t in v if t not in known]
        if bad:
            raise ValueError(f"unknown hazard code(s) {', '.join(map(repr, bad))}; known: {', '.join(known)}")
        return v

    @field_validator("critique_request", "revision_request", "comparison")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()

    @property
    def hazard_tags(self) -> tuple[str, ...]:
        """Tags that are hazard codes S1..S14 (without `attack`)."""
        return tuple(t for t in self.tags if t != "attack")


class CritiqueExample(BaseModel):
    """A worked critique -> revision demonstration. ``prompt``/``response`` is shorthand for a 2-turn dialogue."""

    model_config = ConfigDict(extra="forbid")

    messages: list[Message] = Field(min_length=1)
    critique_request: str
    critique: str
    revision_request: str
    revision: str

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and "prompt" in data and "messages" not in data:
            data = dict(data)
            data["messages"] = [{"role": "user", "content": data.pop("prompt")},
                                {"role": "assistant", "content": data.pop("response", "")}]
        return data

    @model_validator(mode="after")
    def _ends_with_assistant(self) -> CritiqueExample:
        if self.messages[-1].role != "assistant":
            raise ValueError("messages must end with the assistant response being critiqued")
        return self


class FeedbackExample(BaseModel):
    """A worked multiple-choice comparison for the feedback model."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    response_a: str
    response_b: str
    comparison: str = DEFAULT_COMPARISON
    answer: Literal["A", "B"]
    reasoning: str = ""  # used by --cot


class Constitution(BaseModel):
    """A named, versioned list of principles plus optional few-shot examples."""

    model_config = ConfigDict(extra="forbid")

    name: str = "constitution"
    version: str = "1"
    description: str = ""
    principles: list[Principle] = Field(min_length=1)
    few_shot: list[CritiqueExample] = []
    feedback_few_shot: list[FeedbackExample] = []
    source: str = Field(default="", exclude=True)

    @field_validator("version", mode="before")
    @classmethod
    def _version_str(cls, v: Any) -> str:
        if isinstance(v, float):  # YAML `version: 1.10` is the number 1.1: the text as written is lost
            raise ValueError(f"{v!r} is read as a number, which can change it (1.10 becomes 1.1); quote it as "
                             "written, e.g. version: \"1.10\"")
        return str(v)

    @model_validator(mode="after")
    def _unique_ids(self) -> Constitution:
        if not math.isfinite(sum(p.weight for p in self.principles)):
            raise ValueError("field 'principles': the weights add up to more than a float can hold; "
                             "use smaller weights (only their ratios matter)")
        seen: set[str] = set()
        for p in self.principles:
            if p.id in seen:
                raise ValueError(f"principle {p.id!r}: field 'id': duplicated")
            seen.add(p.id)
        return self

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.principles]

    def get(self, principle_id: str) -> Principle:
        for p in self.principles:
            if p.id == principle_id:
                return p
        raise KeyError(f"no principle {principle_id!r} in constitution {self.name!r}; known: {', '.join(self.ids)}")

    def select(self, ids: Iterable[str] | None = None, tags: Iterable[str] | None = None) -> Constitution:
        """A constitution restricted to some principle ids and/or to principles carrying any of `tags`."""
        ps = list(self.principles)
        if ids:
            want = list(ids)
            for i in want:
                self.get(i)
            ps = [p for p in ps if p.id in want]
        if tags:
            tg = set(tags)
            ps = [p for p in ps if tg & set(p.tags)]
        if not ps:
            raise ConstitutionError(f"no principle of {self.name!r} matches ids={ids} tags={tags}")
        return self.model_copy(update={"principles": ps})

    def sample(self, rng: random.Random, among: Sequence[Principle] | None = None) -> Principle:
        """One principle drawn with probability proportional to its weight."""
        ps = list(among) if among else self.principles
        return rng.choices(ps, weights=[p.weight for p in ps], k=1)[0]

    def for_categories(self, categories: Iterable[str]) -> list[Principle]:
        """Principles tagged with any of these hazard codes (all principles when none match)."""
        cats = set(categories)
        hit = [p for p in self.principles if cats & set(p.tags)]
        return hit or list(self.principles)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_defaults=False), sort_keys=False,
                              allow_unicode=True, width=110)


# ---- loading ---------------------------------------------------------------------------------------
def _fmt_loc(loc: Sequence[Any]) -> str:
    return ".".join(str(x) for x in loc) if loc else "(top level)"


def _where(src: str, lines: dict[tuple, int] | None, loc: Sequence[Any]) -> str:
    """`src:LINE` for the nearest YAML line of `loc` (a field path), or just `src` when unknown."""
    if lines:
        path = tuple(loc)
        for k in range(len(path), -1, -1):
            if path[:k] in lines and (k or len(lines) == 1):
                return f"{src}:{lines[path[:k]]}"
    return src


def _principle_errors(raw: list[Any], src: str, lines: dict[tuple, int] | None = None) -> list[str]:
    msgs: list[str] = []
    for n, item in enumerate(raw, start=1):
        if not isinstance(item, dict):
            msgs.append(f"{_where(src, lines, ('principles', n - 1))}: principle #{n}: must be a mapping, "
                        f"got {type(item).__name__}")
            continue
        pid = item.get("id")
        who = f"principle {pid!r} (#{n})" if isinstance(pid, str) and pid else f"principle #{n} (no id)"
        try:
            Principle.model_validate(item)
        except ValidationError as e:
            for err in e.errors():
                field = _fmt_loc(err["loc"])
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    msg = f"unknown field (known: {', '.join(Principle.model_fields)})"
                at = _where(src, lines, ("principles", n - 1, *err["loc"]))
                msgs.append(f"{at}: {who}: field '{field}': {msg}")
    return msgs


def parse_constitution(data: Any, source: str = "<data>", lines: dict[tuple, int] | None = None) -> Constitution:
    """Validate parsed YAML/JSON (any supported format) into a Constitution, or raise ConstitutionError."""
    if isinstance(data, dict) and "constitutions" in data:
        data = _from_llm_swarm(data, source)
    elif isinstance(data, dict) and data and all(
            isinstance(v, dict) and "edit_request" in v for v in data.values()):
        data = _from_anthropic_instructions(data, source)
    if not isinstance(data, dict):
        raise ConstitutionError(f"{source}: expected a mapping with 'principles', got {type(data).__name__}")
    raw = data.get("principles")
    if isinstance(raw, list):
        errs = _principle_errors(raw, source, lines)
        if errs:
            raise ConstitutionError("\n".join(errs))
    try:
        c = Constitution.model_validate(data)
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            loc = list(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if loc[:1] in (["few_shot"], ["feedback_few_shot"]) and len(loc) > 1:
                where = f"{loc[0]} example #{int(loc[1]) + 1}: field '{_fmt_loc(loc[2:])}'"
            elif not loc and msg.startswith(("principle ", "field ")):
                where = ""
            else:
                where = f"field '{_fmt_loc(loc)}'"
            msgs.append(f"{_where(source, lines, loc or ['principles'])}: {where + ': ' if where else ''}{msg}")
        raise ConstitutionError("\n".join(msgs)) from None
    c.source = source
    return c


def _from_llm_swarm(data: dict[str, Any], source: str) -> dict[str, Any]:
    items = data.get("constitutions")
    if not isinstance(items, list):
        raise ConstitutionError(f"{source}: field 'constitutions': must be a list of {{critic, revision}}")
    principles = []
    for n, it in enumerate(items, start=1):
        if not isinstance(it, dict):
            raise ConstitutionError(f"{source}: principle 'llm-swarm-{n:02d}' (#{n}): must be a mapping")
        for key in ("critic", "revision"):
            if not isinstance(it.get(key), str) or not it[key].strip():
                raise ConstitutionError(
                    f"{source}: principle 'llm-swarm-{n:02d}' (#{n}): field '{key}': missing or empty")
        principles.append({
            "id": f"llm-swarm-{n:02d}",
            "critique_request": it["critic"],
            "revision_request": it["revision"],
            "comparison": f"Which response better satisfies this request: \"{it['revision'].strip()}\"?",
        })
    few = []
    for n, chat in enumerate(data.get("system_chat") or [], start=1):
        if not isinstance(chat, list) or len(chat) < 6:
            raise ConstitutionError(f"{source}: system_chat #{n}: expected a list of at least 6 messages "
                                    "(dialogue, critique request, critique, revision request, revision)")
        for k, m in enumerate(chat, start=1):
            if not isinstance(m, dict) or not isinstance(m.get("content"), str):
                raise ConstitutionError(f"{source}: system_chat #{n}: message #{k}: must be a mapping with 'role' "
                                        f"and 'content' (string), got {type(m).__name__}")
        *dialogue, crq, crit, rrq, rev = chat
        few.append({"messages": dialogue, "critique_request": crq.get("content", ""),
                    "critique": crit.get("content", ""), "revision_request": rrq.get("content", ""),
                    "revision": rev.get("content", "")})
    name = Path(source).stem if source and not source.startswith("<") else "llm-swarm"
    return {"name": name, "version": "1", "description": "llm-swarm constitution", "principles": principles,
            "few_shot": few}


def _from_anthropic_instructions(data: dict[str, Any], source: str) -> dict[str, Any]:
    principles = []
    for key, v in data.items():
        crit = v.get("prompt")
        crit = crit[0] if isinstance(crit, list) and crit else crit
        principles.append({"id": str(key), "critique_request": crit or "", "revision_request": v["edit_request"],
                           "comparison": DEFAULT_COMPARISON})
    return {"name": Path(source).stem, "principles": principles}


def _read_file(path: Path) -> tuple[Any, dict[tuple, int] | None]:
    """Parsed file and (for YAML) its line map. Unreadable, non-UTF-8, malformed files and duplicate YAML keys
    are a one-line ConstitutionError naming the file and line."""
    from bastion.yamlsrc import ConfigError, load_yaml_text, read_text

    if path.is_dir():
        raise ConstitutionError(f"{path}: is a directory, not a constitution file")
    if not path.exists():
        raise ConstitutionError(f"{path}: no such file")
    try:
        text = read_text(path)
        if path.suffix.lower() == ".json":
            try:
                return json.loads(text), None
            except json.JSONDecodeError as e:
                raise ConstitutionError(f"{path}:{e.lineno}: not valid JSON: {e.msg} (column {e.colno})") from None
            except RecursionError:
                raise ConstitutionError(f"{path}: not valid JSON: nested too deeply") from None
        return load_yaml_text(text, str(path))
    except ConfigError as e:
        raise ConstitutionError(str(e)) from None


_DEFAULT_CACHE: dict[str, Constitution] = {}


def default_constitution() -> Constitution:
    """The constitution shipped with Bastion (parsed once per process)."""
    if "default" not in _DEFAULT_CACHE:
        text = resources.files(__package__).joinpath("data/bastion.yaml").read_text("utf-8")
        _DEFAULT_CACHE["default"] = parse_constitution(yaml.safe_load(text), "bastion:default")
    return _DEFAULT_CACHE["default"]


def load_constitution(path: str | Path | None = None) -> Constitution:
    """Load a constitution file (YAML, Bastion JSON, llm-swarm JSON); None or 'default' -> the shipped one."""
    if path is None or str(path) == "default":
        return default_constitution()
    p = Path(path)
    data, lines = _read_file(p)
    return parse_constitution(data, str(p), lines)


def load_few_shot(path: str | Path) -> list[CritiqueExample]:
    """Critique/revision examples from a file: a list of examples, or any constitution file's few_shot."""
    p = Path(path)
    data, _ = _read_file(p)
    if isinstance(data, dict):
        if "constitutions" in data:
            data = _from_llm_swarm(data, str(p))
        data = data.get("few_shot", [])
    if not isinstance(data, list):
        raise ConstitutionError(f"{p}: expected a list of few-shot examples")
    out = []
    for n, item in enumerate(data, start=1):
        try:
            out.append(CritiqueExample.model_validate(item))
        except ValidationError as e:
            err = e.errors()[0]
            raise ConstitutionError(f"{p}: few-shot example #{n}: field '{_fmt_loc(err['loc'])}': "
                                    f"{err['msg'].removeprefix('Value error, ')}") from None
    return out
