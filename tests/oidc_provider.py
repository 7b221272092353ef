"""A real OpenID Connect provider for the tests: ``oidc-provider-mock`` (Authlib's provider in a
Flask app) served by werkzeug on 127.0.0.1, in a thread of the test process.

It serves discovery, its key set, the authorization endpoint with a login form, and the token
endpoint, and signs ID tokens (RS256) for whoever logs in, with the claims set for that user
(``set_user``). ``id_token()`` drives the authorization code flow over HTTP, as a client app
would, to get a real signed token. Each provider has its own signing key and issuer
(``http://127.0.0.1:<port>``); ``stop()`` and ``start()`` make it unreachable and back (same
port, same key). ``hits`` counts the requests it served per path.

Also used by ``bench/run.py`` (the token benchmark), so it imports nothing of pytest.
"""

from __future__ import annotations

import socket
import threading
import urllib.parse
import uuid
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import authlib.deprecate
import requests
import werkzeug.serving

with warnings.catch_warnings():
    # It imports Authlib modules that Authlib now deprecates (authlib.jose, its httpx client);
    # authlib.deprecate's own "always" filter must be overridden after it is installed.
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    import oidc_provider_mock

# Our configuration for each kind of provider, pointed at a mock's issuer.
AZURE_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
AZURE_CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
COGNITO_CLIENT_ID = "1example23456789abcdefghij"
OIDC_CLIENT_ID = "agent-platform"
REDIRECT_URI = "http://127.0.0.1/callback"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MockProvider:
    def __init__(self, *, port: int | None = None) -> None:
        self.app = oidc_provider_mock.app()
        self.port = port or free_port()
        self.hits: Counter[str] = Counter()
        self._server: werkzeug.serving.BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _counted(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.hits[environ.get("PATH_INFO", "")] += 1
        return self.app(environ, start_response)

    def start(self) -> MockProvider:
        self._server = werkzeug.serving.make_server("127.0.0.1", self.port, self._counted, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(5)
            self._server = None

    def __enter__(self) -> MockProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- as a client app would use it ---

    def set_user(self, sub: str, claims: Mapping[str, Any]) -> None:
        """The claims the provider puts in the tokens of the user who logs in as ``sub``."""
        response = requests.put(
            f"{self.issuer}/users/{urllib.parse.quote(sub, safe='')}", json=dict(claims), timeout=10
        )
        assert response.status_code == 204, response.text

    def authorization_code(
        self, sub: str, *, client_id: str, redirect_uri: str = REDIRECT_URI, nonce: str = "n"
    ) -> str:
        """Log in as ``sub`` on the provider's authorization form; the code it redirects with."""
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid email profile",
            "state": "state",
            "nonce": nonce,
        }
        response = requests.post(
            f"{self.issuer}/oauth2/authorize", params=params, data={"sub": sub}, allow_redirects=False, timeout=10
        )
        assert response.status_code == 302, response.text
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(response.headers["Location"]).query)
        return query["code"][0]

    def id_token(self, sub: str, claims: Mapping[str, Any] | None = None, *, client_id: str) -> str:
        """A real ID token for ``sub`` (with ``claims``, if given), through the code flow."""
        if claims is not None:
            self.set_user(sub, claims)
        code = self.authorization_code(sub, client_id=client_id)
        response = requests.post(
            f"{self.issuer}/oauth2/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "client_id": client_id,
                "client_secret": "mock-accepts-any-secret",
            },
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return str(response.json()["id_token"])


@dataclass
class Providers:
    azure: MockProvider
    cognito: MockProvider
    generic: MockProvider

    def azure_token(self, oid: str | None = None, **claims: Any) -> str:
        """An Azure AD token of user ``oid`` (its app roles in ``roles``)."""
        oid = oid or str(uuid.uuid4())
        base = {"oid": oid, "tid": AZURE_TENANT, "email": f"{oid[:8]}@contoso.example", "name": "Azure User"}
        return self.azure.id_token(f"azure-{oid}", {**base, **claims}, client_id=AZURE_CLIENT_ID)

    def cognito_id_token(self, sub: str | None = None, **claims: Any) -> str:
        sub = sub or str(uuid.uuid4())
        base = {"token_use": "id", "email": f"{sub[:8]}@cognito.example", "cognito:username": f"user-{sub[:8]}"}
        return self.cognito.id_token(sub, {**base, **claims}, client_id=COGNITO_CLIENT_ID)

    def cognito_access_token(self, sub: str | None = None, **claims: Any) -> str:
        """Shaped as Cognito's: token_use access, the app client in client_id, no aud (null), no email."""
        sub = sub or str(uuid.uuid4())
        base = {"token_use": "access", "client_id": COGNITO_CLIENT_ID, "aud": None, "scope": "openid email"}
        return self.cognito.id_token(sub, {**base, **claims}, client_id="cognito-hosted-ui")

    def generic_token(self, sub: str | None = None, **claims: Any) -> str:
        sub = sub or str(uuid.uuid4())
        base = {"email": f"{sub[:8]}@sso.example", "name": "SSO User"}
        return self.generic.id_token(sub, {**base, **claims}, client_id=OIDC_CLIENT_ID)


def provider_env(
    *, azure: MockProvider | None = None, cognito: MockProvider | None = None, generic: MockProvider | None = None
) -> dict[str, str]:
    """Our environment variables for these mocks as Azure AD, Cognito and a generic issuer."""
    env: dict[str, str] = {}
    if azure is not None:
        env.update(
            AZURE_AD_TENANT_ID=AZURE_TENANT,
            AZURE_AD_CLIENT_ID=AZURE_CLIENT_ID,
            AZURE_AD_CLIENT_SECRET="azure-client-secret",
            AZURE_AD_ISSUER=azure.issuer,
        )
    if cognito is not None:
        env.update(
            COGNITO_REGION="eu-west-1",
            COGNITO_USER_POOL_ID="eu-west-1_Example1",
            COGNITO_CLIENT_ID=COGNITO_CLIENT_ID,
            # The mock's token endpoint authenticates clients by secret only (no public clients).
            COGNITO_CLIENT_SECRET="cognito-client-secret",
            COGNITO_ISSUER=cognito.issuer,
        )
    if generic is not None:
        env.update(
            OIDC_ISSUER=generic.issuer,
            OIDC_CLIENT_ID=OIDC_CLIENT_ID,
            OIDC_CLIENT_SECRET="oidc-client-secret",
            OIDC_LABEL="Example SSO",
        )
    return env
