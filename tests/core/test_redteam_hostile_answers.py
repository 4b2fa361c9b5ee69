"""A hostile or broken service answering with what no parser expects: JSON nested deeper than
Python's recursion limit, an expiry past year 9999, a rate-limit reset at infinity, a count
in superscript digits. Each is a clear refusal or an unknown, never an internal error (the
CLI's exit 3, or `connc check`'s "internal error; please report it")."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from connc import http
from connc.check import reach
from connc.check.kube import _version
from connc.errors import ConncError, GitHubError
from connc.github.pulls import PullRequests
from connc.identity import aws, pypi
from connc.identity import token as tokens
from connc.identity.aws import Session
from connc.secrets import Secret
from kit.servers.hostile import Reply, recording_server

DEEP = b"[" * 5000  # deeper than the recursion limit: json.loads raises RecursionError
FAR = 2**39  # seconds since the epoch: year 19391, past what a datetime holds
SENTINEL = "CANARY-hostile-answer-40c2"
JSON = {"Content-Type": "application/json"}


def _part(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _jwt(claims: bytes) -> str:
    return f"{_part(b'{}')}.{_part(claims)}.{SENTINEL}"


def test_an_answer_nested_too_deep_is_no_json() -> None:
    with recording_server({"/": Reply(200, JSON, DEEP)}) as server:
        answer = http.request("GET", server.url() + "/", timeout=10)
    assert answer.json() is None


@pytest.mark.parametrize("claims", [DEEP, b'{"aud": ' + DEEP, json.dumps(
    {"aud": "sts.amazonaws.com", "exp": FAR}).encode(), json.dumps(
    {"aud": "sts.amazonaws.com", "exp": 1e308}).encode()])
def test_a_junk_id_token_is_refused_as_a_token(claims: bytes) -> None:
    """A GitLab `id_tokens:` variable, or a token service, holding junk: refused in the
    token's own words, never quoted."""
    value = _jwt(claims)
    with pytest.raises(tokens.TokenProblem) as refused:
        found = tokens.parse(value, "the token")
        tokens.check(found, {}, "sts.amazonaws.com", "the token")
    assert SENTINEL not in str(refused.value)


def test_an_expiry_past_year_9999_from_ecr_or_an_index_is_unknown() -> None:
    session = Session(Secret("AKID"), Secret("secret"), Secret("session"), None)
    registry = base64.b64encode(f"AWS:{SENTINEL}".encode()).decode()
    ecr = json.dumps({"authorizationData": [{"authorizationToken": registry,
                                             "expiresAt": FAR}]}).encode()
    minted = json.dumps({"token": SENTINEL, "expires": FAR}).encode()
    with recording_server({"/": Reply(200, JSON, ecr),
                           "/_/oidc/mint-token": Reply(200, JSON, minted)}) as server:
        spec = {"region": "eu-central-1", "roleArn": "arn:aws:iam::123456789012:role/r",
                "ecrEndpoint": server.url() + "/"}
        issued = aws.authorization_token(spec, session, "ecr")
        id_token = tokens.parse(_jwt(b'{"aud": "pypi"}'), "t")
        upload = pypi.mint(server.url() + "/legacy/", id_token, "pub")
    assert issued.password.reveal() == SENTINEL and issued.expires_at is None
    assert upload.token.reveal() == SENTINEL and upload.expires_at is None


@pytest.mark.parametrize("reply", [
    Reply(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1e300"}),
    Reply(429, {"Retry-After": "1e12"}),
    Reply(429, {"Retry-After": "inf"}),
    Reply(200, JSON, DEEP),
])
def test_github_answers_past_every_range_are_refusals(reply: Reply) -> None:
    with recording_server({"/repos/o/r/pulls/1": reply}) as server:
        pulls = PullRequests(server.url(), "o/r", Secret(SENTINEL), max_attempts=2,
                             max_wait=1.0, sleep=lambda _s: None)
        with pytest.raises(GitHubError) as refused:
            pulls.pull_request(1)
    assert SENTINEL not in str(refused.value)


@pytest.mark.parametrize("count", ["\u00b2", "9" * 5000, "-1", "12"])
def test_a_count_header_is_ascii_digits_or_unknown(count: str) -> None:
    answer = reach.Answer(200, {"X-Total": count})
    assert reach.header_int(answer, "X-Total") == (12 if count == "12" else None)


def test_a_kube_version_nested_too_deep_is_no_version() -> None:
    assert _version(DEEP.decode()) == ""


def test_the_moment_of_an_expiry() -> None:
    assert tokens.moment(1_700_000_000) == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)
    for junk in (FAR, 1e308, float("inf"), float("nan"), -5, 0, True, "1700000000", None):
        assert tokens.moment(junk) is None
    assert issubclass(tokens.TokenProblem, ConncError)


@pytest.mark.parametrize(("header", "expected"), [
    ('<https://api.github.com/x?page=2>; rel="next", <https://api.github.com/x?page=9>; '
     'rel="last"', "https://api.github.com/x?page=2"),
    ('<https://a/x?page=1>; rel="prev", <https://a/x?page=3>; rel="next"', "https://a/x?page=3"),
    ("</v2/_catalog?last=b&n=100>; rel=next", "/v2/_catalog?last=b&n=100"),
    ('<https://a/3>; type="text/html"; rel="prev next"', "https://a/3"),
    ('<https://a/1>; rel="last"', None),
    ('<https://a/1> rel="next"', None),  # no `;`: not a parameter
    ("<https://a/1", None),
    ("", None),
    (None, None),
])
def test_next_link(header: str | None, expected: str | None) -> None:
    assert http.next_link(header) == expected


@pytest.mark.parametrize("header", ["<" * 3_000_000, "<a>" + " ;" * 1_000_000,
                                    "<a>; rel=" * 300_000, "<>" * 1_500_000])
def test_next_link_is_linear_in_the_header(header: str) -> None:
    import time

    started = time.process_time()
    http.next_link(header)
    # CPU time, not the wall clock: a busy machine slows the run, not the count.
    assert time.process_time() - started < 2  # a backtracking pattern takes hours here


def test_a_registry_challenge_is_parsed_in_linear_time() -> None:
    import time

    from connc.check.registry import _challenge

    assert _challenge('Bearer realm="https://auth/token",service="reg",scope="a:b:*"') == (
        "bearer", {"realm": "https://auth/token", "service": "reg", "scope": "a:b:*"})
    started = time.process_time()
    _challenge("Bearer " + "a" * 3_000_000)
    assert time.process_time() - started < 2


def test_a_gitlab_next_page_of_five_thousand_digits_ends_the_list() -> None:
    """int() refuses more than 4,300 digits: such an `x-next-page` is no page number."""
    from connc.diff.gitlab import MergeRequests, Token

    with recording_server() as server:
        server.routes["/api/v4/projects/7/merge_requests/1/versions"] = Reply(
            200, {**JSON, "x-next-page": "9" * 5000}, b"[]")
        requests = MergeRequests(server.url() + "/api/v4", "7",
                                 Token(Secret(SENTINEL), "GITLAB_TOKEN"))
        assert requests.versions(1) == []
