"""connc.github against a local fake of the GitHub API (tests/kit/servers/github_fake.py)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest

from connc.errors import GitHubError
from connc.github.apps import GitHubApp, InstallationToken, jwt_for_app, revoke_installation_token
from connc.secrets import Secret
from kit.keys import ec_key, key_pem
from kit.servers._net import LOOPBACK, free_port
from kit.servers.github_fake import FakeGitHub, github_api, unresponsive_server  # noqa: F401

CANARY_TOKEN = "ghs_CANARYcanaryCANARY0123456789abcdefXYZ"


class Sleeps(list[float]):
    """A stand-in for time.sleep that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_app(fake: FakeGitHub, *, pem: str | None = None, app_id: str | None = None,
             url: str | None = None, sleep: Callable[[float], None] | None = None,
             **kwargs: object) -> GitHubApp:
    return GitHubApp(url or fake.url, app_id or fake.app_id, Secret(fake.private_key_pem if pem is None else pem),
                     connection="deploy-bot", sleep=Sleeps() if sleep is None else sleep, **kwargs)  # type: ignore[arg-type]


def closed_port_url() -> str:
    return f"http://{LOOPBACK}:{free_port()}"


# --- minting ----------------------------------------------------------------------------------


def test_mint_returns_token_and_aware_utc_expiry(github_api: FakeGitHub) -> None:
    before = dt.datetime.now(dt.UTC)
    token = make_app(github_api).mint_installation_token(github_api.installation_id)

    assert isinstance(token, InstallationToken)
    assert isinstance(token.token, Secret)
    assert token.token.reveal() == github_api.minted[0].token
    assert token.token.reveal().startswith("ghs_")
    assert github_api.is_live(token.token.reveal())
    assert token.expires_at.tzinfo is not None
    assert token.expires_at.utcoffset() == dt.timedelta(0)
    assert before + dt.timedelta(minutes=59) < token.expires_at <= before + dt.timedelta(hours=1, seconds=5)
    assert token.permissions == github_api.permissions
    assert token.repositories is None

    request = github_api.requests[0]
    assert request.method == "POST"
    assert request.path == f"/app/installations/{github_api.installation_id}/access_tokens"
    assert request.headers["Accept"] == "application/vnd.github+json"
    assert request.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert request.headers["User-Agent"] == f"connc/{connc_version()}"
    assert request.headers["Authorization"] == f"Bearer {github_api.minted[0].jwt}"


def connc_version() -> str:
    import connc

    return connc.__version__


@pytest.mark.parametrize(("repositories", "permissions"), [
    (None, None),
    (["app", "infra"], None),
    (None, {"contents": "read"}),
    (["docs"], {"contents": "write", "pull_requests": "read"}),
])
def test_scope_is_sent_only_when_declared(
    github_api: FakeGitHub, repositories: list[str] | None, permissions: dict[str, str] | None
) -> None:
    token = make_app(github_api).mint_installation_token(
        github_api.installation_id, repositories, permissions)

    body = github_api.minted[0].body
    assert ("repositories" in body) == (repositories is not None)
    assert ("permissions" in body) == (permissions is not None)
    assert body.get("repositories") == repositories
    assert body.get("permissions") == permissions
    assert token.repositories == repositories
    assert token.permissions == (permissions or github_api.permissions)


@pytest.mark.parametrize("scope", [{"repositories": []}, {"permissions": {}}])
def test_empty_scope_is_refused_rather_than_widened(github_api: FakeGitHub, scope: dict) -> None:
    # GitHub would read an empty list as "no restriction": the token would cover everything.
    with pytest.raises(GitHubError, match="deploy-bot.*empty"):
        make_app(github_api).mint_installation_token(github_api.installation_id, **scope)
    assert github_api.requests == []


@pytest.mark.parametrize("bad", [0, -3, True, "55501"])
def test_installation_id_must_be_a_positive_int(github_api: FakeGitHub, bad: object) -> None:
    with pytest.raises(GitHubError, match="installationId"):
        make_app(github_api).mint_installation_token(bad)  # type: ignore[arg-type]
    assert github_api.requests == []


def test_jwt_claims_are_exactly_as_specified(github_api: FakeGitHub) -> None:
    now = int(time.time())
    make_app(github_api, clock=lambda: now + 0.7).mint_installation_token(github_api.installation_id)

    record = github_api.minted[0]
    assert record.jwt_header["alg"] == "RS256"
    assert record.jwt_claims == {"iat": now - 60, "exp": now + 540, "iss": github_api.app_id}


def test_jwt_for_app_alone(github_api: FakeGitHub) -> None:
    token = jwt_for_app(github_api.app_id, Secret(github_api.private_key_pem), 1_700_000_000.9)
    claims = jwt.decode(token, github_api.public_key_pem, algorithms=["RS256"],
                        options={"verify_exp": False, "verify_iat": False})
    assert claims == {"iat": 1_700_000_000 - 60, "exp": 1_700_000_000 + 540,
                      "iss": github_api.app_id}
    assert jwt.get_unverified_header(token)["alg"] == "RS256"


def test_client_id_works_as_issuer(github_api: FakeGitHub) -> None:
    make_app(github_api, app_id=github_api.client_id).mint_installation_token(
        github_api.installation_id)
    assert github_api.minted[0].jwt_claims["iss"] == github_api.client_id


@pytest.mark.parametrize("form", ["pkcs1", "pkcs8", "pkcs8-crlf"])
def test_private_key_forms(github_api: FakeGitHub, form: str) -> None:
    pem = {
        "pkcs1": github_api.private_key_pem_pkcs1,
        "pkcs8": github_api.private_key_pem_pkcs8,
        "pkcs8-crlf": "\n" + github_api.private_key_pem_pkcs8.replace("\n", "\r\n"),
    }[form]
    assert "BEGIN RSA PRIVATE KEY" in github_api.private_key_pem_pkcs1
    assert "BEGIN PRIVATE KEY" in github_api.private_key_pem_pkcs8
    token = make_app(github_api, pem=pem).mint_installation_token(github_api.installation_id)
    assert github_api.is_live(token.token.reveal())


def _encrypted_pem(fake: FakeGitHub) -> str:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(fake.private_key_pem.encode(), None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(b"pw")).decode()


@pytest.mark.parametrize("kind", ["garbage", "truncated", "ec", "encrypted", "public", "empty",
                                  "escaped-newlines"])
def test_invalid_private_key(github_api: FakeGitHub, kind: str) -> None:
    pem = {
        # A good key pasted with `\n` escapes: refused, never repaired (the credential
        # contract says how to write it: tests/core/test_pem_contract.py).
        "escaped-newlines": github_api.private_key_pem_pkcs1.replace("\n", "\\n"),
        "garbage": "-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5\n-----END RSA PRIVATE KEY-----",
        "truncated": github_api.private_key_pem[: len(github_api.private_key_pem) // 2],
        "ec": key_pem(ec_key()),
        "encrypted": _encrypted_pem(github_api),
        "public": github_api.public_key_pem,
        "empty": "",
    }[kind]
    with pytest.raises(GitHubError) as caught:
        make_app(github_api, pem=pem).mint_installation_token(github_api.installation_id)
    assert str(caught.value) == ("privateKey of connection 'deploy-bot' is not a valid RSA "
                                 "private key (PKCS#1 or PKCS#8 PEM)")
    assert github_api.requests == []


def test_enterprise_server_url(github_api: FakeGitHub) -> None:
    token = make_app(github_api, url=github_api.ghes_url + "/").mint_installation_token(
        github_api.installation_id)
    assert github_api.is_live(token.token.reveal())
    assert revoke_installation_token(github_api.ghes_url, token.token, timeout=5) is True


# --- retries -----------------------------------------------------------------------------------


def test_retries_5xx_with_exponential_backoff(github_api: FakeGitHub) -> None:
    sleeps = Sleeps()
    github_api.fail_next(500)
    github_api.fail_next(502, times=2)
    token = make_app(github_api, sleep=sleeps).mint_installation_token(github_api.installation_id)
    assert github_api.is_live(token.token.reveal())
    assert sleeps == [1.0, 2.0, 4.0]
    assert len(github_api.requests) == 4
    # Each attempt signs a fresh JWT, so a long wait cannot leave it stale.
    assert all(r.headers["Authorization"].startswith("Bearer ey") for r in github_api.requests)


def test_5xx_every_time_gives_up(github_api: FakeGitHub) -> None:
    sleeps = Sleeps()
    github_api.fail_next(503, times=10)
    with pytest.raises(GitHubError) as caught:
        make_app(github_api, sleep=sleeps).mint_installation_token(github_api.installation_id)
    assert "deploy-bot" in str(caught.value)
    assert "HTTP 503 (4 attempts)" in str(caught.value)
    assert sleeps == [1.0, 2.0, 4.0]
    assert len(github_api.requests) == 4


def test_retry_after_is_honoured(github_api: FakeGitHub) -> None:
    sleeps = Sleeps()
    github_api.fail_next(403, {"retry-after": "7"},
                         {"message": "You have exceeded a secondary rate limit."})
    github_api.fail_next(429, {"retry-after": "3"})
    make_app(github_api, sleep=sleeps).mint_installation_token(github_api.installation_id)
    assert sleeps == [7.0, 3.0]
    assert len(github_api.minted) == 1


def test_rate_limit_reset_is_honoured(github_api: FakeGitHub) -> None:
    sleeps = Sleeps()
    now = time.time()
    github_api.fail_next(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(now) + 20)},
                         {"message": "API rate limit exceeded for installation ID 55501."})
    make_app(github_api, sleep=sleeps, clock=lambda: now).mint_installation_token(
        github_api.installation_id)
    assert sleeps == [pytest.approx(int(now) + 21 - now)]


def test_secondary_rate_limit_without_headers_waits_a_minute(github_api: FakeGitHub) -> None:
    sleeps = Sleeps()
    github_api.fail_next(403, body={"message": "You have exceeded a secondary rate limit."})
    make_app(github_api, sleep=sleeps).mint_installation_token(github_api.installation_id)
    assert sleeps == [60.0]


def test_rate_limit_reset_too_far_fails_clearly(github_api: FakeGitHub) -> None:
    sleeps = Sleeps()
    now = time.time()
    reset = int(now) + 1800
    github_api.fail_next(429, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
    with pytest.raises(GitHubError) as caught:
        make_app(github_api, sleep=sleeps, clock=lambda: now).mint_installation_token(
            github_api.installation_id)
    message = str(caught.value)
    stamp = dt.datetime.fromtimestamp(reset, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"until {stamp}" in message
    assert "deploy-bot" in message and "60 s" in message
    assert sleeps == []
    assert len(github_api.requests) == 1


def test_rate_limit_that_outlasts_the_budget_fails(github_api: FakeGitHub) -> None:
    sleeps = Sleeps()
    github_api.fail_next(429, {"retry-after": "40"}, times=3)
    with pytest.raises(GitHubError, match="rate-limits"):
        make_app(github_api, sleep=sleeps).mint_installation_token(github_api.installation_id)
    assert sleeps == [40.0]  # a second 40 s wait would pass the 60 s budget


def test_plain_403_is_not_retried(github_api: FakeGitHub) -> None:
    sleeps = Sleeps()
    github_api.fail_next(403, body={"message": "This installation has been suspended"})
    with pytest.raises(GitHubError) as caught:
        make_app(github_api, sleep=sleeps).mint_installation_token(github_api.installation_id)
    assert "HTTP 403" in str(caught.value)
    assert 'GitHub said "This installation has been suspended"' in str(caught.value)
    assert sleeps == []


def test_timeout_when_github_never_answers() -> None:
    sleeps = Sleeps()
    with unresponsive_server() as url:
        app = GitHubApp(url, "1", Secret(_fake_key_pem()), connection="deploy-bot",
                        timeout=0.2, max_attempts=3, sleep=sleeps)
        started = time.monotonic()
        with pytest.raises(GitHubError) as caught:
            app.mint_installation_token(7)
    assert time.monotonic() - started < 3
    assert "no answer within 0.2 s" in str(caught.value)
    assert "3 attempts" in str(caught.value)
    assert sleeps == [1.0, 2.0]


def test_invalid_api_url_is_not_retried() -> None:
    sleeps = Sleeps()
    app = GitHubApp("api.github.com", "1", Secret(_fake_key_pem()), connection="deploy-bot",
                    sleep=sleeps)
    with pytest.raises(GitHubError, match="deploy-bot.*invalid apiUrl"):
        app.mint_installation_token(7)
    assert sleeps == []


def test_connection_refused() -> None:
    sleeps = Sleeps()
    app = GitHubApp(closed_port_url(), "1", Secret(_fake_key_pem()), connection="deploy-bot",
                    timeout=1, max_attempts=2, sleep=sleeps)
    with pytest.raises(GitHubError, match="deploy-bot.*connection failed.*2 attempts"):
        app.mint_installation_token(7)
    assert sleeps == [1.0]


def _fake_key_pem() -> str:
    from kit.servers.github_fake import _rsa_key

    return _rsa_key(0)[0]


# --- GitHub's refusals -------------------------------------------------------------------------


@pytest.mark.parametrize("cause", ["wrong-app-id", "other-key", "github-clock-ahead",
                                   "github-clock-behind"])
def test_401_names_the_app_and_hints_at_clock_skew(github_api: FakeGitHub, cause: str) -> None:
    app_id, pem = github_api.app_id, github_api.private_key_pem
    if cause == "wrong-app-id":
        app_id = "999"
    elif cause == "other-key":
        pem = github_api.other_private_key_pem
    elif cause == "github-clock-ahead":
        github_api.clock_offset = 10 * 60  # our exp is already past on GitHub's clock
    else:
        github_api.clock_offset = -5 * 60  # our iat is in GitHub's future
    sleeps = Sleeps()
    with pytest.raises(GitHubError) as caught:
        make_app(github_api, app_id=app_id, pem=pem, sleep=sleeps).mint_installation_token(
            github_api.installation_id)
    message = str(caught.value)
    assert "HTTP 401" in message
    assert f"App '{app_id}'" in message
    assert "clock" in message and "within a minute" in message
    assert "deploy-bot" in message
    assert sleeps == []  # a 401 does not heal by waiting


def test_404_installation_not_found(github_api: FakeGitHub) -> None:
    with pytest.raises(GitHubError) as caught:
        make_app(github_api).mint_installation_token(12345)
    message = str(caught.value)
    assert "installation 12345 not found" in message
    assert f"App '{github_api.app_id}'" in message
    assert "installed on the account" in message
    assert "Enterprise" in message  # a loopback URL is neither api.github.com nor …/api/v3


def test_404_on_github_com_has_no_enterprise_hint(github_api: FakeGitHub) -> None:
    with pytest.raises(GitHubError) as caught:
        make_app(github_api, url=github_api.ghes_url).mint_installation_token(12345)
    assert "Enterprise" not in str(caught.value)


def test_422_repositories_beyond_the_grant(github_api: FakeGitHub) -> None:
    with pytest.raises(GitHubError) as caught:
        make_app(github_api).mint_installation_token(github_api.installation_id, ["app", "secret-repo"])
    message = str(caught.value)
    assert "HTTP 422" in message
    assert "repositories app, secret-repo" in message
    assert "not accessible to the parent installation" in message
    assert github_api.minted == []


def test_422_permissions_beyond_the_grant(github_api: FakeGitHub) -> None:
    with pytest.raises(GitHubError) as caught:
        make_app(github_api).mint_installation_token(
            github_api.installation_id, None, {"contents": "write", "administration": "write"})
    message = str(caught.value)
    assert "permissions contents: write, administration: write" in message
    assert "not granted to this installation" in message


def test_github_message_is_sanitised(github_api: FakeGitHub) -> None:
    github_api.fail_next(422, body={"message": "bad\x1b[31m\r\nthing " + CANARY_TOKEN
                                               + " eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxIn0.c2ln "
                                               + "z" * 500})
    with pytest.raises(GitHubError) as caught:
        make_app(github_api).mint_installation_token(github_api.installation_id)
    said = str(caught.value).split("GitHub said ", 1)[1]
    assert said.startswith('"bad [31m thing [redacted] [redacted] ')
    assert len(said) <= 202
    assert "\x1b" not in said and "\n" not in said and "eyJ" not in said
    assert "CANARY" not in said


# --- revoke --------------------------------------------------------------------------------------


def test_revoke(github_api: FakeGitHub) -> None:
    token = make_app(github_api).mint_installation_token(github_api.installation_id)
    assert revoke_installation_token(github_api.url, token.token, timeout=5) is True

    request = github_api.requests[-1]
    assert (request.method, request.path) == ("DELETE", "/installation/token")
    assert request.headers["Authorization"] == f"Bearer {token.token.reveal()}"
    assert request.headers["Accept"] == "application/vnd.github+json"
    assert request.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert github_api.revoked == [token.token.reveal()]
    assert not github_api.is_live(token.token.reveal())
    # Already revoked (or expired): 401, which counts as done.
    assert revoke_installation_token(github_api.url, token.token, timeout=5) is False


def test_revoke_retries_5xx(github_api: FakeGitHub) -> None:
    token = make_app(github_api).mint_installation_token(github_api.installation_id)
    sleeps = Sleeps()
    github_api.fail_next(500)
    assert revoke_installation_token(github_api.url, token.token, timeout=5, sleep=sleeps) is True
    assert sleeps == [1.0]


def test_revoke_unexpected_status(github_api: FakeGitHub) -> None:
    github_api.fail_next(403, body={"message": "Forbidden"})
    with pytest.raises(GitHubError, match="cannot revoke an installation token.*HTTP 403"):
        revoke_installation_token(github_api.url, Secret("ghs_x"), timeout=5, connection="deploy-bot")


def test_installation_repositories_endpoint_of_the_fake(github_api: FakeGitHub) -> None:
    import requests

    token = make_app(github_api).mint_installation_token(github_api.installation_id, ["infra"])
    headers = {"Authorization": f"Bearer {token.token.reveal()}", "User-Agent": "t",
               "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    answer = requests.get(github_api.url + "/installation/repositories", headers=headers, timeout=5)
    assert answer.status_code == 200
    assert [r["full_name"] for r in answer.json()["repositories"]] == ["octo-org/infra"]
    revoke_installation_token(github_api.url, token.token, timeout=5)
    assert requests.get(github_api.url + "/installation/repositories", headers=headers,
                        timeout=5).status_code == 401


def test_importing_connc_github_stays_light() -> None:
    # Render start-up time is a product metric: the HTTP and crypto stacks load on first use.
    code = ("import sys, connc.github.apps, connc.github.pulls; "
            "print(sorted(m for m in ('requests', 'jwt', 'cryptography', 'urllib3') "
            "if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "compiler"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# --- canary: no secret in any message -----------------------------------------------------------

CANARY_PEM = ("-----BEGIN RSA PRIVATE KEY-----\n"
              "Q0FOQVJZS0VZTUFURVJJQUxjYW5hcnlrZXltYXRlcmlhbENBTkFSWUtFWU1BVEVS\n"
              "-----END RSA PRIVATE KEY-----\n")


def _failures(fake: FakeGitHub) -> dict[str, Callable[[], object]]:
    """Every way a mint or revoke can fail, with the canary token wherever GitHub could echo it."""
    def app(**kwargs: object) -> GitHubApp:
        return make_app(fake, max_attempts=2, timeout=0.3, **kwargs)  # type: ignore[arg-type]

    def mint(**kwargs: object) -> Callable[[], object]:
        return lambda: app(**kwargs).mint_installation_token(fake.installation_id)

    def inject(status: int, headers: dict[str, str] | None = None, body: object = None,
               times: int = 1, then: Callable[[], object] = lambda: None) -> Callable[[], object]:
        def run() -> object:
            fake.fail_next(status, headers, body, times)  # type: ignore[arg-type]
            return then()
        return run

    echo = {"message": f"token {CANARY_TOKEN} rejected", "token": CANARY_TOKEN}
    revoke = lambda **kw: lambda: revoke_installation_token(  # noqa: E731
        kw.pop("url", fake.url), Secret(CANARY_TOKEN), timeout=0.3, max_attempts=2,
        sleep=Sleeps(), connection="deploy-bot")

    def on_unresponsive(action: Callable[[str], object]) -> Callable[[], object]:
        def run() -> object:
            with unresponsive_server() as url:
                return action(url)
        return run

    return {
        "bad-pem": mint(pem=CANARY_PEM),
        "bad-pem-escaped": mint(pem=CANARY_PEM.replace("\n", "\\n")),
        "401-wrong-app": mint(app_id="31337"),
        "401-other-key": mint(pem=fake.other_private_key_pem),
        "404": lambda: app().mint_installation_token(1),
        "422-echo": inject(422, body=echo, then=mint()),
        "500-echo": inject(500, body=echo, times=2, then=mint()),
        "403-echo": inject(403, body=echo, then=mint()),
        "rate-limit-far": inject(429, {"retry-after": "3600"}, echo, then=mint()),
        "201-bad-expiry": inject(201, body={"token": CANARY_TOKEN, "expires_at": "soon"},
                                 then=mint()),
        "201-not-json": inject(201, body=f'{{"token": "{CANARY_TOKEN}", oops', then=mint()),
        "201-token-with-newline": inject(201, body={"token": CANARY_TOKEN + "\nX: y",
                                                    "expires_at": "2030-01-01T00:00:00Z"},
                                         then=mint()),
        "302-redirect": inject(302, {"Location": closed_port_url()}, echo, then=mint()),
        "timeout": on_unresponsive(lambda url: app(url=url).mint_installation_token(1)),
        "refused": mint(url=closed_port_url()),
        "revoke-500-echo": inject(500, body=echo, times=2, then=revoke()),
        "revoke-403-echo": inject(403, body=echo, then=revoke()),
        "revoke-timeout": on_unresponsive(lambda url: revoke(url=url)()),
        "revoke-refused": revoke(url=closed_port_url()),
    }


def _texts(exc: BaseException) -> list[str]:
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args), repr(vars(current))]
        current = current.__cause__ or current.__context__
    return texts


def _sentinels(fake: FakeGitHub) -> list[str]:
    pem_lines = [line for pem in (fake.private_key_pem_pkcs1, fake.private_key_pem_pkcs8,
                                  fake.other_private_key_pem, CANARY_PEM)
                 for line in pem.splitlines() if "-----" not in line and len(line) >= 16]
    jwts = [r.headers["Authorization"][len("Bearer "):] for r in fake.requests
            if r.headers.get("Authorization", "").startswith("Bearer ey")]
    return [CANARY_TOKEN[4:20], CANARY_TOKEN[-16:], "Q0FOQVJZS0VZ", *pem_lines, *jwts]


def test_canary_never_leaks_from_any_failure(github_api: FakeGitHub) -> None:
    failures = _failures(github_api)
    assert len(failures) >= 15
    for name, action in failures.items():
        with pytest.raises(GitHubError) as caught:
            action()
        exc = caught.value
        # Raised outside any except block: no chained exception holding a body or a key.
        assert exc.__cause__ is None and exc.__context__ is None, name
        texts = _texts(exc)
        for sentinel in _sentinels(github_api):
            for text in texts:
                assert sentinel not in text, f"{name}: secret in {text!r}"
    assert len([r for r in github_api.requests if r.path == "/installation/token"]) >= 1


def test_canary_never_leaks_from_reprs(github_api: FakeGitHub) -> None:
    github_api.queue_token(CANARY_TOKEN)
    app = make_app(github_api)
    token = app.mint_installation_token(github_api.installation_id, ["app"], {"contents": "read"})
    assert token.token.reveal() == CANARY_TOKEN
    texts = [repr(app), str(app), repr(token), str(token), f"{token}", repr(vars(app)),
             json.dumps(repr(token.__dict__))]
    for sentinel in _sentinels(github_api):
        for text in texts:
            assert sentinel not in text
    assert revoke_installation_token(github_api.url, token.token, timeout=5) is True


def test_the_trust_variables_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    from connc.http import ca_bundle

    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    assert ca_bundle() is True
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/private-ca.pem")
    assert ca_bundle() == "/etc/ssl/private-ca.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/requests-ca.pem")
    assert ca_bundle() == "/etc/ssl/requests-ca.pem"
