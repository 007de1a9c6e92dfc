"""Deterministic ids: the same business id always reaches the same aggregate."""

from functools import lru_cache
from uuid import NAMESPACE_URL, UUID, uuid5

NAMESPACE = uuid5(NAMESPACE_URL, "https://coterm.example/")


@lru_cache(maxsize=65536)  # uuid5 hashes: the hot path asks for the same ids again and again
def aggregate_id(kind: str, business_id: str) -> UUID:
    return uuid5(NAMESPACE, f"/{kind}/{business_id}")


def subscription_key(*parts: str) -> str:
    """A new subscription key, stable for the parts it is derived from (replays give the same key)."""
    digest = uuid5(NAMESPACE, "/keys/" + "/".join(parts)).hex.upper()
    return "-".join(digest[i : i + 5] for i in range(0, 25, 5))
