"""pypi-publish: PyPI trusted publishing, for any index that speaks it (PyPI, TestPyPI, ...).

The index's audience is asked at `/_/oidc/audience` (when the connection says `audience:
auto`), and the ID token is traded at `/_/oidc/mint-token` for an upload token that lives
15 minutes. Both endpoints are on the host of the connection's sealed upload `url`, which is
where twine will send the token. An index accepts each ID token once: every mint has its own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from connc import http, urls
from connc.errors import RenderError
from connc.identity.ci import REQUEST_TIMEOUT, USER_AGENT
from connc.identity.token import IdToken, moment
from connc.schema import check
from connc.schema.policy import AUDIENCE_PATTERN
from connc.secrets import Secret

_CODE = re.compile(r"[a-z][a-z-]{0,39}")  # warehouse's error codes, fit to show
_CODES = {
    "invalid-publisher": "the index has no trusted publisher matching this job: add one on "
                         "the project's Publishing page (owner/repository, workflow file and "
                         "environment, or the GitLab project path and CI file)",
    "invalid-pending-publisher": "the pending publisher's project exists already",
    "invalid-token": "the index does not accept the ID token (another issuer or audience?)",
    "invalid-reuse-token": "the ID token was used before; each mint needs a fresh one",
    "not-enabled": "trusted publishing is turned off on this index",
    "invalid-payload": "the index could not read the request",
}


@dataclasses.dataclass(frozen=True)
class UploadToken:
    token: Secret
    expires_at: dt.datetime | None


def _endpoint(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def audience(url: str, connection: str) -> str:
    """The audience the index wants its ID tokens for (PyPI's: `pypi`)."""
    endpoint = _endpoint(url, "/_/oidc/audience")
    answer = _request("GET", endpoint, connection)
    body = answer.json()
    value = body.get("audience") if isinstance(body, dict) else None
    if answer.status != 200 or not isinstance(value, str) or \
            not check.matches(AUDIENCE_PATTERN, value):
        raise RenderError(f"connection `{connection}`: {urls.host_of(endpoint)} did not name "
                          f"its trusted publishing audience (HTTP {answer.status} from "
                          f"/_/oidc/audience): is it an index with trusted publishing?")
    return value


def mint(url: str, id_token: IdToken, connection: str) -> UploadToken:
    endpoint = _endpoint(url, "/_/oidc/mint-token")
    answer = _request("POST", endpoint, connection, {"token": id_token.value.reveal()})
    body = answer.json()
    token = body.get("token") if isinstance(body, dict) else None
    if answer.status != 200 or not isinstance(token, str) or not token:
        raise RenderError(f"connection `{connection}`: {urls.host_of(endpoint)} refused to mint "
                          f"an upload token (HTTP {answer.status}{_reasons(body)})")
    return UploadToken(Secret(token), moment(body.get("expires")))


def _reasons(body: Any) -> str:
    """Warehouse's error codes, each with what it means; its descriptions are not shown (they
    can quote the token's claims at length)."""
    errors = body.get("errors") if isinstance(body, dict) else None
    codes = [error.get("code") for error in errors[:3] if isinstance(error, Mapping)] \
        if isinstance(errors, list) else []
    shown = [f"{code}: {_CODES.get(code, 'see the index')}" for code in codes
             if isinstance(code, str) and _CODE.fullmatch(code)]
    return "; " + "; ".join(shown) if shown else ""


def _request(method: str, url: str, connection: str,
             json_body: Mapping[str, str] | None = None) -> http.Answer:
    try:
        return http.request(method, url, json_body=json_body, timeout=REQUEST_TIMEOUT,
                            headers={"User-Agent": USER_AGENT, "Accept": "application/json"})
    except http.Failure as failure:
        raise RenderError(f"connection `{connection}`: {failure.message}") from None
