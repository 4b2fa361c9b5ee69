"""The CI identity layer's parts: the SigV4 signer (held to botocore's), the ID token's
checks, and which CI a token comes from. End to end: tests/render/test_secretless.py."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connc.errors import RenderError, UsageError
from connc.identity import ci, sigv4
from connc.identity import token as tokens
from connc.secrets import Secret

SENTINEL = "CANARY-id-token-5e1f"


def jwt_of(claims: dict[str, object], signature: str = SENTINEL) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.{signature}"


# --- SigV4, against botocore ------------------------------------------------------------------

_TEXT = st.text(st.sampled_from("abcXYZ019-_.~ "), min_size=1, max_size=12)
_NAME = st.text(st.sampled_from("abcdefxyz-"), min_size=1, max_size=10).filter(
    lambda n: n.strip("-") and n.lower() not in ("host", "user-agent", "expect", "x-amz-date",
                                                 "x-amz-security-token", "authorization"))


@settings(max_examples=60, deadline=None)
@given(method=st.sampled_from(["GET", "POST", "PUT"]),
       path=st.sampled_from(["/", "/v1/items", "/a/b~c", "/with%20space"]),
       query=st.dictionaries(st.text("abcdef", min_size=1, max_size=5),
                             st.text("abc123", max_size=5), max_size=3),
       headers=st.dictionaries(_NAME, _TEXT, max_size=4),
       body=st.binary(max_size=64),
       port=st.sampled_from([None, 443, 8443]),
       region=st.sampled_from(["us-east-1", "eu-central-1", "cn-north-1"]),
       service=st.sampled_from(["ecr", "sts", "execute-api"]),
       token=st.one_of(st.none(), _TEXT),
       moment=st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 1, 1)))
def test_signatures_are_botocores(method: str, path: str, query: dict[str, str],
                                  headers: dict[str, str], body: bytes, port: int | None,
                                  region: str, service: str, token: str | None,
                                  moment: dt.datetime) -> None:
    from urllib.parse import urlencode

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    now = moment.replace(tzinfo=dt.UTC)
    url = f"https://api.example.com{f':{port}' if port else ''}{path}"
    if query:
        url += "?" + urlencode(sorted(query.items()))
    signed = sigv4.sign(method, url, headers, body, access_key=Secret("AKIDEXAMPLE"),
                        secret_key=Secret("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
                        session_token=Secret(token) if token else None, region=region,
                        service=service, now=now)
    # botocore recomputes it from the request as sent, the way moto's checker does.
    request = AWSRequest(method=method, url=url, data=body,
                         headers={k: v for k, v in signed.items() if k != "Authorization"})
    request.context["timestamp"] = signed["X-Amz-Date"]
    auth = SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                 token), service, region)
    canonical = auth.canonical_request(request)
    expected = auth.signature(auth.string_to_sign(request, canonical), request)
    assert signed["Authorization"].endswith(f"Signature={expected}")
    assert f"SignedHeaders={auth.signed_headers(auth.headers_to_sign(request))}," \
        in signed["Authorization"]


def test_the_signer_costs_render_no_botocore() -> None:
    import subprocess
    import sys

    code = ("import sys, connc.identity.exchange\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('botocore', 'boto3', "
            "'pydantic', 'click')))")
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert ran.stdout.strip() == "[]"


# --- ID tokens --------------------------------------------------------------------------------


def _future(seconds: int = 300) -> int:
    return int(dt.datetime.now(dt.UTC).timestamp()) + seconds


def test_a_token_for_another_audience_issuer_or_time_is_refused() -> None:
    identity = {"audience": "sts.amazonaws.com", "issuer": "https://gitlab.com"}
    good = tokens.parse(jwt_of({"iss": "https://gitlab.com", "aud": ["x", "sts.amazonaws.com"],
                                "exp": _future()}), "the token")
    tokens.check(good, identity, "sts.amazonaws.com", "the token")
    cases = [
        ({"iss": "https://gitlab.com", "aud": "pypi", "exp": _future()}, "audience pypi"),
        ({"iss": "https://evil.example", "aud": "sts.amazonaws.com", "exp": _future()},
         "issued by https://evil.example"),
        ({"iss": "https://gitlab.com", "aud": "sts.amazonaws.com", "exp": _future(-5)},
         "expired at"),
        ({"iss": "https://gitlab.com", "aud": "sts.amazonaws.com"}, "no expiry"),
        ({"iss": "https://gitlab.com", "aud": "sts.amazonaws.com", "exp": True}, "no expiry"),
    ]
    for claims, why in cases:
        value = jwt_of(claims)
        with pytest.raises(tokens.TokenProblem, match=why) as refused:
            tokens.check(tokens.parse(value, "the token"), identity, "sts.amazonaws.com",
                         "the token")
        assert SENTINEL not in str(refused.value) and value not in str(refused.value)


@pytest.mark.parametrize("value", ["", "a.b", "a..c", f"{SENTINEL}.{SENTINEL}.{SENTINEL}",
                                   "x" * 70000 + ".a.b", "a.W10.c", "a.bm90IGpzb24.c"])
def test_what_is_not_a_jwt_is_refused_without_quoting_it(value: str) -> None:
    with pytest.raises(tokens.TokenProblem) as refused:
        tokens.parse(value, "the variable X")
    assert SENTINEL not in str(refused.value)
    assert str(refused.value).startswith("the variable X is not a JWT")


def test_an_id_token_never_shows_in_its_repr() -> None:
    found = tokens.parse(jwt_of({"aud": "a", "exp": _future()}), "t")
    assert SENTINEL not in repr(found) and SENTINEL not in f"{found}"


# --- which CI ---------------------------------------------------------------------------------


def test_auto_picks_the_ci_this_runs_in() -> None:
    assert ci.ci_provider("auto", {"GITHUB_ACTIONS": "true"}) == ci.GITHUB
    assert ci.ci_provider("auto", {"GITLAB_CI": "true"}) == ci.GITLAB
    with pytest.raises(UsageError, match="not a GitHub Actions or GitLab CI job"):
        ci.ci_provider("auto", {})
    with pytest.raises(UsageError, match="not a GitLab CI job"):
        ci.ci_provider("gitlab-ci", {"GITHUB_ACTIONS": "true"})


def test_pull_request_target_is_untrusted() -> None:
    ci.refuse_untrusted_event({"GITHUB_EVENT_NAME": "pull_request"})
    with pytest.raises(RenderError, match="pull_request_target"):
        ci.refuse_untrusted_event({"GITHUB_EVENT_NAME": "pull_request_target"})


def test_a_token_file_is_checked_like_a_ci_token(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "token"
    path.write_text(jwt_of({"aud": "pypi", "exp": _future()}) + "\n")
    source = ci.TokenFile(path)
    assert source.token({"audience": "pypi"}, "pypi", connection="c").audiences == ("pypi",)
    with pytest.raises(tokens.TokenProblem, match="audience pypi, not kubernetes"):
        source.token({"audience": "kubernetes"}, "kubernetes", connection="c")
    with pytest.raises(UsageError, match="--id-token-file"):
        ci.TokenFile(path.with_name("missing")).token({}, "pypi", connection="c")
