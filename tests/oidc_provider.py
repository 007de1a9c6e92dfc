"""An OpenID Connect provider for tests, over real HTTP: discovery, keys, a sign-in page,
Authorization Code with PKCE (S256), refresh tokens and sign-out.

Keycloak does not run in `make test` (see the README's "Signing in"); this provider is built here
with joserfc, the JOSE library of authlib, and speaks the same protocol to coterm and to the
browser. Tests mint tokens directly (`mint`) or sign users in through the page. Its keys can be
rotated (`rotate`) and a second provider made as a stranger with the same claims.
"""

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey

CLIENT_ID = "coterm-dashboard"
AUDIENCE = "coterm-api"


def _key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


@dataclass
class Provider:
    """`users`: name -> extra claims (roles, partner_id, distributor_id)."""
    users: dict[str, dict[str, Any]]
    url: str = ""
    keys: list[RSAKey] = field(default_factory=lambda: [_key("key-1")])
    token_lifetime_s: int = 300
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    refresh: dict[str, str] = field(default_factory=dict)
    jwks_fetches: int = 0
    token_requests: list[dict[str, str]] = field(default_factory=list)

    @property
    def issuer(self) -> str:
        return self.url + "/realms/coterm"

    def discovery(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "jwks_uri": self.issuer + "/keys",
                "authorization_endpoint": self.issuer + "/authorize", "token_endpoint": self.issuer + "/token",
                "end_session_endpoint": self.issuer + "/logout",
                "response_types_supported": ["code"], "code_challenge_methods_supported": ["S256"],
                "id_token_signing_alg_values_supported": ["RS256", "HS256"],  # HS256 listed, as Keycloak does
                "subject_types_supported": ["public"]}

    def rotate(self) -> RSAKey:
        """A new signing key, published beside the old one (as an issuer rotates)."""
        key = _key(f"key-{len(self.keys) + 1}")
        self.keys.append(key)
        return key

    def mint(self, user: str, key: RSAKey | None = None, **overrides: Any) -> str:
        """An access token for `user` as this provider issues it; `overrides` replace claims
        (None removes one)."""
        key = key or self.keys[-1]
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": AUDIENCE, "sub": f"sub-{user}", "preferred_username": user,
                  "iat": now, "nbf": now, "exp": now + self.token_lifetime_s, "azp": CLIENT_ID, **self.users[user]}
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "JWT"}, claims, key)

    def _tokens(self, user: str) -> dict[str, Any]:
        refresh = secrets.token_urlsafe(16)
        self.refresh[refresh] = user
        return {"access_token": self.mint(user), "id_token": self.mint(user, aud=CLIENT_ID), "token_type": "Bearer",
                "expires_in": self.token_lifetime_s, "refresh_token": refresh}


def _handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def _send(self, status: int, body: Any, content_type: str = "application/json",
                  headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode() if content_type == "application/json" else body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Access-Control-Allow-Origin", "*")  # the page exchanges the code from its own origin
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_OPTIONS(self) -> None:  # noqa: N802 - CORS preflight
            self._send(204, "", "text/plain", {"Access-Control-Allow-Methods": "POST, GET",
                                               "Access-Control-Allow-Headers": "Content-Type"})

        def do_GET(self) -> None:  # noqa: N802
            path, _, query = self.path.partition("?")
            args = {k: v[0] for k, v in parse_qs(query).items()}
            base = urlsplit(provider.issuer).path
            if path == base + "/.well-known/openid-configuration":
                self._send(200, provider.discovery())
            elif path == base + "/keys":
                provider.jwks_fetches += 1
                self._send(200, {"keys": [k.as_dict(private=False) for k in provider.keys]})
            elif path == base + "/authorize":
                self._sign_in_page(args)
            elif path == base + "/logout":
                self._redirect(args.get("post_logout_redirect_uri", provider.url))
            else:
                self._send(404, {"error": "not_found"})

        def _sign_in_page(self, args: dict[str, str]) -> None:
            if args.get("client_id") != CLIENT_ID or args.get("code_challenge_method") != "S256" or not args.get("code_challenge"):
                self._send(400, {"error": "invalid_request", "error_description": "a known client with PKCE S256"})
                return
            hidden = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in args.items())
            self._send(200, f"""<!doctype html><title>Sign in</title><h1>Sign in to the test realm</h1>
                <form method="post" action="{escape(urlsplit(provider.issuer).path)}/authorize">{hidden}
                <label>Username <input id="username" name="username"></label>
                <label>Password <input id="password" name="password" type="password"></label>
                <button id="kc-login" type="submit">Sign in</button></form>""", "text/html")

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            base = urlsplit(provider.issuer).path
            if self.path == base + "/authorize":
                user = form.get("username", "")
                if user not in provider.users or form.get("password") != "secret-" + user:
                    self._send(200, "<p id='error'>Invalid username or password</p>", "text/html")
                    return
                code = secrets.token_urlsafe(16)
                provider.codes[code] = {"user": user, "challenge": form["code_challenge"],
                                        "redirect_uri": form["redirect_uri"]}
                self._redirect(form["redirect_uri"] + "?" + urlencode({"code": code, "state": form.get("state", "")}))
            elif self.path == base + "/token":
                provider.token_requests.append(form)
                self._token(form)
            else:
                self._send(404, {"error": "not_found"})

        def _token(self, form: dict[str, str]) -> None:
            if form.get("client_id") != CLIENT_ID:
                self._send(401, {"error": "invalid_client"})
            elif form.get("grant_type") == "authorization_code":
                grant = provider.codes.pop(form.get("code", ""), None)
                verifier = form.get("code_verifier", "")
                challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if grant is None or grant["challenge"] != challenge or grant["redirect_uri"] != form.get("redirect_uri"):
                    self._send(400, {"error": "invalid_grant"})
                else:
                    self._send(200, provider._tokens(grant["user"]))
            elif form.get("grant_type") == "refresh_token" and form.get("refresh_token") in provider.refresh:
                self._send(200, provider._tokens(provider.refresh.pop(form["refresh_token"])))
            else:
                self._send(400, {"error": "invalid_grant"})

    return Handler


@contextmanager
def running(users: dict[str, dict[str, Any]], **options: Any) -> Iterator[Provider]:
    provider = Provider(users=users, **options)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(provider))
    provider.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
