"""AWS Signature Version 4, for the one signed call render makes (ECR GetAuthorizationToken).

Small on purpose: botocore would cost render ~110 ms of start-up and 16 MB for one signature.
It signs exactly the headers it is given (plus `host`, `x-amz-date` and the session token it
adds), the way AWS's documentation and botocore's SigV4Auth compute it; tests hold it to
botocore's signer over generated requests.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote, urlsplit

from connc.secrets import Secret
from connc.urls import host_port

ALGORITHM = "AWS4-HMAC-SHA256"


def host_header(url: str) -> str:
    """The Host a client sends for `url`: its netloc without a default port."""
    parts = urlsplit(url)
    return host_port(parts.hostname or "", parts.port, parts.scheme)


def sign(method: str, url: str, headers: Mapping[str, str], body: bytes, *,
         access_key: Secret, secret_key: Secret, session_token: Secret | None, region: str,
         service: str, now: dt.datetime) -> dict[str, str]:
    """`headers` with Host, X-Amz-Date, X-Amz-Security-Token and Authorization added."""
    amz_date = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    signed = {"Host": host_header(url), **headers, "X-Amz-Date": amz_date}
    if session_token is not None:
        signed["X-Amz-Security-Token"] = session_token.reveal()
    canonical, names = canonical_request(method, url, signed, body)
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(("AWS4" + secret_key.reveal()).encode(), amz_date[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed["Authorization"] = (f"{ALGORITHM} Credential={access_key.reveal()}/{scope}, "
                               f"SignedHeaders={names}, Signature={signature}")
    return signed


def canonical_request(method: str, url: str, headers: Mapping[str, str],
                      body: bytes) -> tuple[str, str]:
    """(the canonical request, its signed header names)."""
    parts = urlsplit(url)
    path = quote(parts.path or "/", safe="/~")
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in
                     sorted(parse_qsl(parts.query, keep_blank_values=True)))
    lowered = sorted((name.lower(), " ".join(value.split())) for name, value in headers.items())
    names = ";".join(name for name, _ in lowered)
    lines = "".join(f"{name}:{value}\n" for name, value in lowered)
    return "\n".join([method.upper(), path, query, lines, names,
                      hashlib.sha256(body).hexdigest()]), names


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()
