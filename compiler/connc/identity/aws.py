"""aws-ecr: the job's ID token for an STS session, the session for an ECR registry token.

1. STS `AssumeRoleWithWebIdentity` (unsigned: the ID token is the credential) at the
   connection's sealed `stsEndpoint`, for `roleArn`, for `sessionDurationSeconds`.
2. ECR `GetAuthorizationToken`, signed with the session (SigV4, `sigv4`), at `ecrEndpoint`.

Only the registry token reaches the bundle (docker's `auths`); the session keys stay in this
process, as `Secret`s, and are dropped when the exchange returns. Registry keys come from the
sealed spec (`registry`, or the accounts and region), never from an answer, so a server cannot
move the token to another host. AWS's error codes are mapped to messages; AWS's own message
text is never shown.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

from connc import http, urls
from connc.errors import RenderError
from connc.identity import sigv4
from connc.identity.ci import REQUEST_TIMEOUT, USER_AGENT
from connc.identity.token import IdToken, moment
from connc.secrets import Secret

STS_AUDIENCE = "sts.amazonaws.com"
_ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9.]{0,63}")  # an AWS error code, fit to show

# What each STS refusal means for the person reading the job's log.
_STS_CODES = {
    "AccessDenied": "the role's trust policy does not allow this job's identity: compare its "
                    "`sub` and `aud` conditions with this repository, branch or environment",
    "InvalidIdentityToken": "AWS does not accept the token: is the CI's OIDC provider (its "
                            "issuer) registered in the role's account?",
    "IDPRejectedClaim": "the identity provider's claims were refused: check the role's trust "
                        "policy conditions",
    "ExpiredTokenException": "the ID token expired before AWS read it",
    "IDPCommunicationError": "AWS could not reach the identity provider's keys; run it again",
    "ValidationError": "AWS refused a value of the request: is sessionDurationSeconds above "
                       "the role's maximum session duration?",
    "RegionDisabledException": "STS is not activated in this region for the account",
}
_ECR_CODES = {
    "AccessDeniedException": "the role may not call ecr:GetAuthorizationToken (its permission "
                             "policy)",
    "AccessDenied": "the role may not call ecr:GetAuthorizationToken (its permission policy)",
    "UnrecognizedClientException": "ECR does not know the session (a clock more than 5 "
                                   "minutes off?)",
    "InvalidClientTokenId": "ECR does not know the session (a clock more than 5 minutes off?)",
    "InvalidSignatureException": "ECR refused the request's signature (a clock more than 5 "
                                 "minutes off?)",
    "SignatureDoesNotMatch": "ECR refused the request's signature (a clock more than 5 minutes "
                             "off?)",
    "ExpiredTokenException": "the STS session expired before ECR read it",
}


@dataclasses.dataclass(frozen=True)
class Session:
    access_key: Secret
    secret_key: Secret
    session_token: Secret
    expires_at: dt.datetime | None

    def __repr__(self) -> str:
        return "Session(**********)"


@dataclasses.dataclass(frozen=True)
class RegistryToken:
    username: str
    password: Secret
    expires_at: dt.datetime | None


def _suffix(region: str) -> str:
    return "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"


def account(spec: Mapping[str, Any]) -> str:
    return str(spec["roleArn"]).split(":")[4]


def sts_url(spec: Mapping[str, Any]) -> str:
    region = str(spec["region"])
    return str(spec.get("stsEndpoint") or f"https://sts.{region}.{_suffix(region)}")


def ecr_url(spec: Mapping[str, Any]) -> str:
    region = str(spec["region"])
    return str(spec.get("ecrEndpoint") or f"https://api.ecr.{region}.{_suffix(region)}")


def registries(spec: Mapping[str, Any]) -> list[str]:
    """The docker `auths` keys the token goes under: `registry`, or each account's registry
    host in the region (the role's account by default)."""
    if spec.get("registry"):
        return [str(spec["registry"])]
    region = str(spec["region"])
    return [f"{registry_id}.dkr.ecr.{region}.{_suffix(region)}"
            for registry_id in spec.get("registryIds") or [account(spec)]]


def session_name(spec: Mapping[str, Any], connection: str) -> str:
    return str(spec.get("roleSessionName") or f"connc-{connection}"[:64])


def assume_role(spec: Mapping[str, Any], id_token: IdToken, connection: str) -> Session:
    url = sts_url(spec)
    body = urlencode({
        "Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15",
        "RoleArn": spec["roleArn"], "RoleSessionName": session_name(spec, connection),
        "DurationSeconds": str(spec["sessionDurationSeconds"]),
        "WebIdentityToken": id_token.value.reveal()}).encode()
    answer = _send(url, body, {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                               "Accept": "text/xml", "User-Agent": USER_AGENT},
                   connection, "STS")
    root = _xml(answer.content)
    if answer.status != 200 or root is None:
        raise _refusal("STS", _xml_code(root), answer.status, _STS_CODES, connection,
                       urls.host_of(url))
    found = {name: _element(root, name) for name in (
        "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")}
    if not (found["AccessKeyId"] and found["SecretAccessKey"] and found["SessionToken"]):
        raise RenderError(f"connection `{connection}`: STS ({urls.host_of(url)}) answered "
                          f"without session credentials")
    return Session(Secret(found["AccessKeyId"]), Secret(found["SecretAccessKey"]),
                   Secret(found["SessionToken"]), _timestamp(found["Expiration"]))


def authorization_token(spec: Mapping[str, Any], session: Session, connection: str, *,
                        now: dt.datetime | None = None) -> RegistryToken:
    url = ecr_url(spec)
    ids = spec.get("registryIds")
    body = json.dumps({"registryIds": ids} if ids else {}).encode()
    headers = sigv4.sign("POST", url, {"Content-Type": "application/x-amz-json-1.1",
                                       "X-Amz-Target": _ECR_TARGET}, body,
                         access_key=session.access_key, secret_key=session.secret_key,
                         session_token=session.session_token, region=str(spec["region"]),
                         service="ecr", now=now or dt.datetime.now(dt.UTC))
    answer = _send(url, body, {**headers, "User-Agent": USER_AGENT}, connection, "ECR")
    data = answer.json()
    if answer.status != 200 or not isinstance(data, dict):
        code = data.get("__type") if isinstance(data, dict) else _xml_code(_xml(answer.content))
        raise _refusal("ECR", str(code).rsplit("#", 1)[-1] if code else None, answer.status,
                       _ECR_CODES, connection, urls.host_of(url))
    entries = data.get("authorizationData")
    entry = entries[0] if isinstance(entries, list) and entries else None
    encoded = entry.get("authorizationToken") if isinstance(entry, dict) else None
    try:
        decoded = base64.b64decode(str(encoded), validate=True).decode() if encoded else ""
    except (binascii.Error, ValueError):
        decoded = ""
    username, colon, password = decoded.partition(":")
    if not (username and colon and password):
        raise RenderError(f"connection `{connection}`: ECR ({urls.host_of(url)}) answered "
                          f"without a registry token")
    expires_at = moment(entry.get("expiresAt") if isinstance(entry, dict) else None)
    return RegistryToken(username, Secret(password), expires_at)


def _send(url: str, body: bytes, headers: Mapping[str, str], connection: str,
          service: str) -> http.Answer:
    try:
        return http.request("POST", url, data=body, headers=headers, timeout=REQUEST_TIMEOUT)
    except http.Failure as failure:
        raise RenderError(f"connection `{connection}`: {service}: {failure.message}") from None


def _xml(content: bytes) -> ElementTree.Element | None:
    try:
        # expat expands no external entities, and bounds internal expansion (Python >= 3.11's
        # expat 2.4+); the body is at most http's 1 MiB.
        return ElementTree.fromstring(content)
    except ElementTree.ParseError:
        return None


def _element(root: ElementTree.Element, name: str) -> str | None:
    """The text of the first element named `name`, in any namespace."""
    for element in root.iter():
        if element.tag == name or element.tag.endswith("}" + name):
            return (element.text or "").strip() or None
    return None


def _xml_code(root: ElementTree.Element | None) -> str | None:
    return _element(root, "Code") if root is not None else None


def _timestamp(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _refusal(service: str, code: str | None, status: int, meanings: Mapping[str, str],
             connection: str, host: str) -> RenderError:
    shown = code if code and _CODE.fullmatch(code) else None
    meaning = meanings.get(shown or "")
    what = f"{shown}: {meaning}" if meaning else shown or "no error code"
    return RenderError(f"connection `{connection}`: {service} ({host}) refused with HTTP "
                       f"{status} ({what})")
