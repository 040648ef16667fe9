"""Client API keys: stored only as SHA-256 hashes in a YAML keys file.

Keys are 256-bit random tokens, so a fast unsalted hash is enough: there is nothing to brute-force,
and a lookup stays O(1) per request. The upstream key is separate and never comes from this file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

KEY_PREFIX = "bst_"


class KeysError(ValueError):
    """A keys file that cannot be used."""


@dataclass(frozen=True)
class ClientKey:
    id: str
    sha256: str
    rate_limit_per_minute: float | None = None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeyStore:
    """Look up a presented bearer key by its hash."""

    def __init__(self, keys: list[ClientKey] | None = None) -> None:
        self._by_hash: dict[str, ClientKey] = {}
        for k in keys or []:
            self._by_hash[k.sha256] = k

    def __len__(self) -> int:
        return len(self._by_hash)

    def __bool__(self) -> bool:
        return bool(self._by_hash)

    @property
    def ids(self) -> list[str]:
        return sorted(k.id for k in self._by_hash.values())

    def lookup(self, presented: str) -> ClientKey | None:
        h = hash_key(presented)
        k = self._by_hash.get(h)
        if k is not None and hmac.compare_digest(k.sha256, h):
            return k
        return None

    @classmethod
    def load(cls, path: str | Path) -> KeyStore:
        p = Path(path)
        if not p.exists():
            return cls([])
        try:
            raw = yaml.safe_load(p.read_text("utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise KeysError(f"{p}: cannot read keys file: {str(e).splitlines()[0]}") from None
        items = raw.get("keys", []) if isinstance(raw, dict) else None
        if not isinstance(items, list):
            raise KeysError(f"{p}: expected a mapping with a `keys` list")
        keys, seen = [], set()
        for i, it in enumerate(items):
            if not isinstance(it, dict) or not isinstance(it.get("id"), str) or not isinstance(it.get("sha256"), str):
                raise KeysError(f"{p}: keys[{i}] needs string fields `id` and `sha256`")
            h = it["sha256"].lower()
            if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
                raise KeysError(f"{p}: keys[{i}] ({it['id']}): sha256 must be 64 hex digits")
            if it["id"] in seen:
                raise KeysError(f"{p}: duplicate key id {it['id']!r}")
            seen.add(it["id"])
            rl = it.get("rate_limit_per_minute")
            if rl is not None and (isinstance(rl, bool) or not isinstance(rl, (int, float)) or not rl >= 0
                                   or rl == float("inf")):
                raise KeysError(f"{p}: keys[{i}] ({it['id']}): rate_limit_per_minute must be a number >= 0, "
                                f"not {rl!r}")
            keys.append(ClientKey(it["id"], h, None if rl is None else float(rl)))
        return cls(keys)


def add_key(path: str | Path, key_id: str, rate_limit_per_minute: float | None = None) -> str:
    """Create a key, append its hash to the keys file (created 0600) and return the key (shown once)."""
    p = Path(path)
    store = KeyStore.load(p)
    if key_id in store.ids:
        raise KeysError(f"{p}: key id {key_id!r} already exists")
    raw = (yaml.safe_load(p.read_text("utf-8")) if p.exists() else None) or {"keys": []}
    key = new_key()
    entry: dict = {"id": key_id, "sha256": hash_key(key)}
    if rate_limit_per_minute is not None:
        entry["rate_limit_per_minute"] = rate_limit_per_minute
    raw.setdefault("keys", []).append(entry)
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        yaml.safe_dump(raw, f, sort_keys=False)
    os.replace(tmp, p)
    return key
