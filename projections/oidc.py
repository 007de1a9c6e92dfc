"""Bearer JWTs from one OpenID Connect issuer (COTERM_OIDC_ISSUER), checked with PyJWT.

Nothing of JOSE is written here: PyJWT checks the signature, `iss`, `aud`, `exp` and `nbf`.
What this module adds is the policy around it:
- keys come from the issuer's discovery document (`jwks_uri`), which must name the configured
  issuer; they are kept for `keys_max_age_s`, and a token naming a key id not among them makes
  one refetch (key rotation), at most one per `refetch_interval_s` across all requests: a
  flood of made-up key ids costs the issuer one request a second, not one per token;
- only asymmetric algorithms the issuer publishes are accepted, each with a key of its own
  kind (`alg: none` and an HS256 token "signed" with a public key fail here);
- every failure is `InvalidToken` with a short reason that names the check, never a key or a claim.
"""

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt

ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    audience: str
    roles_claim: str = "roles"  # a dotted path: `realm_access.roles` reads Keycloak's realm roles
    partner_claim: str = "partner_id"
    distributor_claim: str = "distributor_id"
    client_id: str | None = None  # the dashboard's public client (Authorization Code with PKCE)
    scopes: str = "openid profile"
    leeway_s: int = 10  # clock skew between the issuer and coterm, no more
    keys_max_age_s: float = 600.0
    refetch_interval_s: float = 1.0
    fetch_timeout_s: float = 5.0


# What PyJWT found wrong, as the 401 says it: the check, never a value. The last one catches the rest.
FAILED_CHECKS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet"),
    (jwt.InvalidAudienceError, "the token is not meant for coterm (audience)"),
    (jwt.InvalidIssuerError, "the token is from another issuer"),
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
    (jwt.PyJWTError, "the token is not valid"),
)


class InvalidToken(Exception):
    """The token fails a check (401). The message names the check only."""


class ProviderUnavailable(Exception):
    """The issuer's discovery document or keys cannot be read now (503): no token can be judged."""


def fetch_json(url: str, timeout_s: float) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "application/json"}),
                                    timeout=timeout_s) as answer:
            document = json.loads(answer.read(1_000_001))
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise ProviderUnavailable(f"{url}: {getattr(error, 'reason', error)}") from None
    if not isinstance(document, dict):
        raise ProviderUnavailable(f"{url}: not a JSON object")
    return document


def claim(claims: dict[str, Any], path: str) -> Any:
    """The value at a dotted path (`realm_access.roles`), or None."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


@dataclass
class Issuer:
    config: OidcConfig
    fetch: Callable[[str, float], dict[str, Any]] = fetch_json
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _discovery: dict[str, Any] | None = None
    _keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    _fetched_at: float = float("-inf")

    def discovery(self) -> dict[str, Any]:
        if self._discovery is None:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            document = self.fetch(url, self.config.fetch_timeout_s)
            if str(document.get("issuer", "")).rstrip("/") != self.config.issuer.rstrip("/"):
                raise ProviderUnavailable(f"{url} names issuer {document.get('issuer')!r}, not COTERM_OIDC_ISSUER")
            if not isinstance(document.get("jwks_uri"), str):
                raise ProviderUnavailable(f"{url} has no jwks_uri")
            self._discovery = document
        return self._discovery

    def algorithms(self) -> list[str]:
        published = self.discovery().get("id_token_signing_alg_values_supported") or ["RS256"]  # OIDC's default
        return [a for a in published if a in ASYMMETRIC]

    def _refresh(self) -> None:
        document = self.fetch(self.discovery()["jwks_uri"], self.config.fetch_timeout_s)
        keys = document.get("keys")
        if not isinstance(keys, list):
            raise ProviderUnavailable("the issuer's key set has no keys")
        self._keys = {str(k.get("kid", "")): k for k in keys if isinstance(k, dict) and k.get("use", "sig") == "sig"}
        self._fetched_at = time.monotonic()

    def _key(self, kid: str | None) -> dict[str, Any] | None:
        keys, fresh = self._keys, time.monotonic() - self._fetched_at <= self.config.keys_max_age_s
        if fresh and kid is not None and kid in keys:
            return keys[kid]  # the common case takes no lock
        with self._lock:
            if time.monotonic() - self._fetched_at > self.config.keys_max_age_s:
                try:
                    self._refresh()
                except ProviderUnavailable:
                    if not self._keys:
                        raise
                    # Keep the keys we have while the issuer is away; try again in half a minute.
                    self._fetched_at = time.monotonic() - self.config.keys_max_age_s + 30
            if kid is None:  # allowed only while the issuer publishes a single key
                return next(iter(self._keys.values())) if len(self._keys) == 1 else None
            if kid not in self._keys:
                # Rotation: refetch once. Waiting out the interval rather than refusing keeps a
                # rotation right after another refetch working, and still bounds the issuer's load.
                time.sleep(max(0.0, self._fetched_at + self.config.refetch_interval_s - time.monotonic()))
                self._refresh()
            return self._keys.get(kid)

    def claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("the token is not a signed JWT") from None
        alg = header.get("alg")
        if alg not in self.algorithms():
            raise InvalidToken("the token's algorithm is not one the issuer signs with")
        kid = header.get("kid")
        jwk = self._key(kid if isinstance(kid, str) else None)
        if jwk is None:
            raise InvalidToken("the token names no signing key of the issuer")
        if jwk.get("alg") not in (None, alg):
            raise InvalidToken("the token's algorithm is not its key's")
        try:
            key = jwt.PyJWK(jwk, algorithm=alg).key
        except jwt.PyJWTError:
            raise InvalidToken("the token's algorithm does not fit its key") from None
        try:
            return jwt.decode(token, key, algorithms=[alg], audience=self.config.audience,
                              issuer=self.discovery()["issuer"], leeway=self.config.leeway_s,
                              options={"require": ["exp", "iss", "aud"]})
        except jwt.PyJWTError as error:
            raise InvalidToken(next(why for kind, why in FAILED_CHECKS if isinstance(error, kind))) from None

    def public(self) -> dict[str, Any]:
        """What the dashboard needs to sign in (nothing secret: a public client has no secret)."""
        document = self.discovery()
        return {"issuer": document["issuer"], "client_id": self.config.client_id, "scopes": self.config.scopes,
                "authorization_endpoint": document.get("authorization_endpoint"),
                "token_endpoint": document.get("token_endpoint"),
                "end_session_endpoint": document.get("end_session_endpoint")}
