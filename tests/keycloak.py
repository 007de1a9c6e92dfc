"""Keycloak from Maven Central (`org.keycloak:keycloak-quarkus-dist`), for the marked `keycloak`
tests (`make test-keycloak`): fetched and built once into a cache outside the tree
(`~/.cache/coterm/keycloak-VERSION`, or `COTERM_KEYCLOAK_CACHE`), then started per session with
an in-memory database on free loopback ports, and given a realm through its admin REST API.

It takes about 15 s to start on two cores (plus 15 s for the one-time build), which is why it
is not part of `make test`: the suite's identity provider there is `tests/oidc_provider.py`.
"""

import fcntl
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processor.dev.broker import free_port

VERSION = "26.5.6"
REALM = "coterm"
CLIENT_ID = "coterm-dashboard"
AUDIENCE = "coterm-api"
ROLES = ("Partner Administrator", "Partner Viewer", "Distributor Administrator", "Distributor Viewer",
         "Account Administrator")


class KeycloakUnavailable(RuntimeError):
    pass


def install(version: str = VERSION) -> Path:
    """The Keycloak directory, fetched and built (`kc.sh build`) once, under a lock."""
    cache = Path(os.environ.get("COTERM_KEYCLOAK_CACHE") or Path.home() / ".cache" / "coterm")
    home = cache / f"keycloak-{version}"
    done = home / ".built"
    if done.exists():
        return home
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        raise KeycloakUnavailable(f"Keycloak needs {' and '.join(missing)} on PATH")
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"keycloak-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return home
        with tempfile.TemporaryDirectory(dir=cache) as download:
            fetch = subprocess.run(["mvn", "-q", "-B", "dependency:copy",
                                    f"-Dartifact=org.keycloak:keycloak-quarkus-dist:{version}:tar.gz",
                                    f"-DoutputDirectory={download}"], capture_output=True, text=True, timeout=900)
            if fetch.returncode != 0:
                raise KeycloakUnavailable(f"mvn could not fetch Keycloak {version}: {(fetch.stdout + fetch.stderr)[-800:]}")
            shutil.rmtree(home, ignore_errors=True)
            with tarfile.open(Path(download) / f"keycloak-quarkus-dist-{version}.tar.gz") as archive:
                archive.extractall(cache, filter="tar")
        # Build-time options, once: an in-memory database, health on the management port.
        build = subprocess.run([str(home / "bin" / "kc.sh"), "build", "--db=dev-mem", "--health-enabled=true"],
                               capture_output=True, text=True, timeout=600)
        if build.returncode != 0:
            raise KeycloakUnavailable(f"kc.sh build failed: {(build.stdout + build.stderr)[-800:]}")
        done.touch()
    return home


@dataclass
class Keycloak:
    url: str
    admin_token: str = ""
    realm: str = REALM

    @property
    def issuer(self) -> str:
        return f"{self.url}/realms/{self.realm}"

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(f"{self.url}/admin/realms{path}", method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Authorization": f"Bearer {self.admin_token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            text = answer.read()
        return json.loads(text) if text else None

    def password_grant(self, user: str, client_id: str = CLIENT_ID, realm: str | None = None) -> dict[str, Any]:
        """Tokens for a user straight from the token endpoint (the client allows it for tests);
        from the realm made last unless told."""
        form = urllib.parse.urlencode({"grant_type": "password", "client_id": client_id, "username": user,
                                       "password": "secret-" + user, "scope": "openid"}).encode()
        issuer = f"{self.url}/realms/{realm or self.realm}"
        with urllib.request.urlopen(f"{issuer}/protocol/openid-connect/token", form, timeout=30) as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]

    def make_realm(self, realm: str, redirect_uri: str, users: dict[str, dict[str, Any]]) -> None:
        """The realm as the README tells an operator to set it up: a public client with PKCE, an
        audience mapper, realm roles, and user attributes mapped to `partner_id`/`distributor_id`."""
        self.realm = realm
        form = urllib.parse.urlencode({"grant_type": "password", "client_id": "admin-cli", "username": "admin",
                                       "password": "admin"}).encode()
        with urllib.request.urlopen(f"{self.url}/realms/master/protocol/openid-connect/token", form, timeout=30) as answer:
            self.admin_token = json.loads(answer.read())["access_token"]
        attribute = lambda name: {"name": name, "protocol": "openid-connect",  # noqa: E731
                                  "protocolMapper": "oidc-usermodel-attribute-mapper",
                                  "config": {"user.attribute": name, "claim.name": name, "jsonType.label": "String",
                                             "access.token.claim": "true", "id.token.claim": "true"}}
        self.admin("POST", "", {
            "realm": realm, "enabled": True,
            "roles": {"realm": [{"name": r} for r in dict.fromkeys([*ROLES, *(r for u in users.values() for r in u.get("roles", []))])]},
            "clients": [{"clientId": CLIENT_ID, "publicClient": True, "standardFlowEnabled": True,
                         "directAccessGrantsEnabled": True, "redirectUris": [redirect_uri + "*"], "webOrigins": ["+"],
                         "attributes": {"pkce.code.challenge.method": "S256", "post.logout.redirect.uris": "+"},
                         "protocolMappers": [
                             {"name": "audience", "protocol": "openid-connect", "protocolMapper": "oidc-audience-mapper",
                              "config": {"included.custom.audience": AUDIENCE, "access.token.claim": "true"}},
                             attribute("partner_id"), attribute("distributor_id")]},
                        # Another application of the same realm: its tokens are not meant for coterm.
                        {"clientId": "other-app", "publicClient": True, "directAccessGrantsEnabled": True,
                         "protocolMappers": [attribute("partner_id")]}]})
        profile = self.admin("GET", f"/{realm}/users/profile")
        self.admin("PUT", f"/{realm}/users/profile", {**profile, "unmanagedAttributePolicy": "ENABLED"})
        for name, claims in users.items():
            attributes = {k: [v] for k, v in claims.items() if k in ("partner_id", "distributor_id")}
            self.admin("POST", f"/{realm}/users", {
                "username": name, "enabled": True, "email": f"{name}@example.com", "emailVerified": True,
                "firstName": name.title(), "lastName": "Example", "attributes": attributes,
                "credentials": [{"type": "password", "value": "secret-" + name, "temporary": False}]})
            [user] = self.admin("GET", f"/{realm}/users?username={name}&exact=true")
            roles = [self.admin("GET", f"/{realm}/roles/{urllib.parse.quote(r)}") for r in claims.get("roles", [])]
            if roles:
                self.admin("POST", f"/{realm}/users/{user['id']}/role-mappings/realm", roles)


@contextmanager
def running(timeout_s: float = 180.0) -> Iterator[Keycloak]:
    home = install()
    port, management = free_port(), free_port()
    log = tempfile.NamedTemporaryFile("w+", prefix="keycloak-", suffix=".log", delete=False)  # noqa: SIM115
    env = {**os.environ, "KC_BOOTSTRAP_ADMIN_USERNAME": "admin", "KC_BOOTSTRAP_ADMIN_PASSWORD": "admin",
           "JAVA_OPTS_KC_HEAP": "-Xms64m -Xmx512m"}
    process = subprocess.Popen([str(home / "bin" / "kc.sh"), "start", "--optimized", "--http-enabled=true",
                                "--http-host=127.0.0.1", f"--http-port={port}", f"--http-management-port={management}",
                                "--hostname-strict=false"], env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    keycloak = Keycloak(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{management}/health/ready", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise KeycloakUnavailable(f"Keycloak did not start: {Path(log.name).read_text()[-1500:]}") from None
                time.sleep(0.5)
        yield keycloak
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
        os.unlink(log.name)
