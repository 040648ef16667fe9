"""bastion.llm: the one OpenAI-protocol client used for every LLM backend (targets, attackers, judges)."""

from .client import (
    ChatResult,
    LLMAuthError,
    LLMBadResponseError,
    LLMClient,
    LLMConnectionError,
    LLMError,
    LLMRateLimitError,
    LLMServerError,
    LLMTimeoutError,
    TokenBucket,
    TokenLogprob,
)

__all__ = [
    "ChatResult", "LLMAuthError", "LLMBadResponseError", "LLMClient", "LLMConnectionError", "LLMError",
    "LLMRateLimitError", "LLMServerError", "LLMTimeoutError", "TokenBucket", "TokenLogprob",
]
