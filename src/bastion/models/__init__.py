"""Model runtime: the embedded default guard model, loaded once per process (no torch at run time)."""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_MODEL_DIR = Path(__file__).parent / "default"


@dataclass(frozen=True)
class PromptScores:
    harm: np.ndarray  # (n,) probability the request should be refused
    attack: np.ndarray  # (n,) probability of a jailbreak / injection attempt
    categories: np.ndarray  # (n, 14) per-hazard probabilities, order = taxonomy.HAZARD_CODES
    windows: np.ndarray  # (n,) number of windows scored


@dataclass(frozen=True)
class ResponseScores:
    harm: np.ndarray  # (n,) probability the response is harmful given the prompt
    refusal: np.ndarray  # (n,) probability the response refuses
    categories: np.ndarray  # (n, 14)
    windows: np.ndarray  # (n,)


class GuardModel(ABC):
    """What the Guard needs from a model. Implementations must be thread-safe for scoring."""

    version: str = "unknown"
    default_thresholds: dict[str, float] = {}

    @abstractmethod
    def score_prompts(self, texts: Sequence[str]) -> PromptScores: ...

    @abstractmethod
    def score_responses(self, prompts: Sequence[str], responses: Sequence[str]) -> ResponseScores: ...


class ModelLoadError(ValueError):
    """A guard model folder that cannot be used; the message names the folder, the file and the reason."""


_CACHE: dict[tuple[str, int], GuardModel] = {}
_LOCK = threading.Lock()


def load_model(path: str | os.PathLike[str] | None = None, threads: int | None = None) -> GuardModel:
    """Load a model directory (default: the embedded model). Cached: one load per process per folder and
    effective thread count (`Guard()` and `Guard(threads=2)` share one model on a 2-core machine)."""
    from .runtime import CascadeModel, effective_threads

    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise ModelLoadError(f"model must be a folder path, not {type(path).__name__}")
    p = Path(path).expanduser() if path is not None else DEFAULT_MODEL_DIR
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 0):
        raise ValueError(f"threads must be a whole number >= 0, not {threads!r}")
    key = (str(p.resolve()), effective_threads(threads))
    with _LOCK:
        m = _CACHE.get(key)
        if m is None:
            m = CascadeModel.load(p, threads=threads)
            _CACHE[key] = m
        return m


__all__ = ["GuardModel", "PromptScores", "ResponseScores", "load_model", "DEFAULT_MODEL_DIR", "ModelLoadError"]
