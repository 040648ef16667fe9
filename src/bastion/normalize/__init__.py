"""De-obfuscation: NFKC, invisible and bidi controls, homoglyphs, leetspeak, character spacing, and
decoded payloads (base64, hex, URL-encoding, rot13, reversed text) as extra views to classify."""

from .core import Normalized, View, normalize

__all__ = ["Normalized", "View", "normalize"]
