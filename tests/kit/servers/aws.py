"""moto's server (STS, IAM, ECR) on loopback, with its IAM signature checking on.

moto checks SigV4 signatures and IAM permissions once its initial unauthenticated actions are
spent (`POST /moto-api/reset-auth` with that count, INITIAL_NO_AUTH_ACTION_COUNT): the
fixture spends them on the setup (the OIDC provider, the role, its permission policy), so
every request connc makes afterwards is checked as AWS checks it: the ECR call must carry a
valid signature of a live STS session whose role's policy allows ecr:GetAuthorizationToken.

Where moto differs from AWS, two patches make it AWS's (undone at teardown):
  * AssumeRoleWithWebIdentity is a public operation (the ID token is the credential, and
    AWS's SDKs send it unsigned); moto would refuse any unsigned request once auth is on.
  * moto does not look at the web identity at all. Here STS verifies it as AWS does: the JWT
    against the issuer's key (`oidc.OidcIssuer`: signature, issuer, audience, expiry), an
    OIDC provider registered for its issuer, and the role's trust policy — its Federated
    principal and its StringEquals / StringLike conditions on `ISSUER:aud` and `ISSUER:sub`,
    the policy docs/secretless/aws-ecr.md shows.
And ECR's registry token gets AWS's 12-hour expiry (moto's says 2015-01-01) unless
`stock_expiry` is set, which the test of an expired exchange uses.

moto's ECR token is the password of user `AWS`: `ACCOUNT-auth-token` (`registry_password`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import json
from collections.abc import Iterator
from typing import Any

import pytest

from .oidc import OidcIssuer

ACCOUNT = "123456789012"  # moto's default account
REGION = "eu-central-1"
ROLE = "ci-push"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"
SETUP_ACTIONS = 3  # CreateOpenIDConnectProvider, CreateRole, PutRolePolicy


def trust_policy(issuer: str, subject: str, audience: str = "sts.amazonaws.com") -> dict[str, Any]:
    """The role's trust policy for a CI's OIDC provider, as docs/secretless/aws-ecr.md shows."""
    host = issuer.removeprefix("https://")
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{host}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{host}:aud": audience},
                      "StringLike": {f"{host}:sub": subject}}}]}


PUSH_POLICY = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"}]}


def registry_password(account: str = ACCOUNT) -> str:
    return f"{account}-auth-token"


@dataclasses.dataclass
class Aws:
    url: str  # http://127.0.0.1:PORT: STS, IAM and ECR alike
    issuer: OidcIssuer
    stock_expiry: bool = False
    assumed: list[str] = dataclasses.field(default_factory=list)  # role session names
    refused: list[str] = dataclasses.field(default_factory=list)  # why STS refused


def _allowed(policy: dict[str, Any], claims: dict[str, Any], issuer: str) -> bool:
    host = issuer.removeprefix("https://")
    for statement in policy.get("Statement", []):
        principal = statement.get("Principal", {}).get("Federated")
        if statement.get("Effect") != "Allow" or principal != \
                f"arn:aws:iam::{ACCOUNT}:oidc-provider/{host}":
            continue
        conditions = statement.get("Condition", {})
        ok = True
        for operator, match in (("StringEquals", lambda p, v: p == v),
                                ("StringLike", fnmatch.fnmatchcase)):
            for key, wanted in conditions.get(operator, {}).items():
                provider, _, claim = key.rpartition(":")
                values = wanted if isinstance(wanted, list) else [wanted]
                ok = ok and provider == host and any(
                    match(str(claims.get(claim)), str(value)) for value in values)
        if ok:
            return True
    return False


def _patch(state: Aws) -> list[tuple[Any, str, Any]]:
    import jwt
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.ecr.responses import ECRResponse
    from moto.iam.models import iam_backends
    from moto.sts.exceptions import STSClientError
    from moto.sts.responses import TokenResponse

    authenticate = ActionAuthenticatorMixin._authenticate_and_authorize_action
    assume = TokenResponse.assume_role_with_web_identity
    get_token = ECRResponse.get_authorization_token

    def public_web_identity(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        if self._get_action() == "AssumeRoleWithWebIdentity" and \
                "Authorization" not in self.headers:
            return
        authenticate(self, iam_request_cls, resource)

    def verified_web_identity(self: Any) -> Any:
        token = self._get_param("WebIdentityToken")
        iam = iam_backends[ACCOUNT]["aws"]
        host = state.issuer.issuer.removeprefix("https://")
        try:
            claims = state.issuer.verify(token, "sts.amazonaws.com")
        except jwt.InvalidTokenError as error:
            state.refused.append(type(error).__name__)
            raise STSClientError("InvalidIdentityToken", "The ID token is invalid") from None
        if f"arn:aws:iam::{ACCOUNT}:oidc-provider/{host}" not in iam.open_id_providers:
            state.refused.append("no provider")
            raise STSClientError("InvalidIdentityToken", "No OpenIDConnect provider found")
        role = iam.get_role_by_arn(self._get_param("RoleArn"))
        if not _allowed(json.loads(role.assume_role_policy_document), claims,
                        state.issuer.issuer):
            state.refused.append("trust policy")
            raise STSClientError("AccessDenied", "Not authorized to perform "
                                                 "sts:AssumeRoleWithWebIdentity")
        state.assumed.append(self._get_param("RoleSessionName"))
        return assume(self)

    def twelve_hours(self: Any) -> Any:
        result = get_token(self)
        if not state.stock_expiry:
            for entry in result.result["authorizationData"]:
                entry["expiresAt"] = dt.datetime.now(dt.UTC) + dt.timedelta(hours=12)
        return result

    patches = [(ActionAuthenticatorMixin, "_authenticate_and_authorize_action",
                public_web_identity),
               (TokenResponse, "assume_role_with_web_identity", verified_web_identity),
               (ECRResponse, "get_authorization_token", twelve_hours)]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    return originals


@pytest.fixture(scope="module")
def aws_server() -> Iterator[tuple[str, Any]]:
    """moto's threaded server, one per module (its state is global to this process)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}", server
    finally:
        server.stop()


@pytest.fixture
def aws(aws_server: tuple[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """A fresh account: the GitHub issuer registered, role `ci-push` trusting `acme/app`'s main
    branch and allowed to get ECR tokens; then auth on for everything connc sends."""
    import boto3
    import requests
    from moto.core.authorization import ActionAuthenticatorMixin

    from .oidc import github_issuer

    url, _server = aws_server
    requests.post(f"{url}/moto-api/reset", timeout=10)
    state = Aws(url, github_issuer())
    # The setup's own client: botocore, with moto's dummy keys (not checked yet).
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    requests.post(f"{url}/moto-api/reset-auth", data=str(SETUP_ACTIONS).encode(), timeout=10)
    iam = boto3.client("iam", endpoint_url=url, region_name=REGION)
    iam.create_open_id_connect_provider(Url=state.issuer.issuer,
                                        ClientIDList=["sts.amazonaws.com"],
                                        ThumbprintList=["0" * 40])
    iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(
        trust_policy(state.issuer.issuer, "repo:acme/app:ref:refs/heads/main")))
    iam.put_role_policy(RoleName=ROLE, PolicyName="ecr-pull",
                        PolicyDocument=json.dumps(PUSH_POLICY))
    assert ActionAuthenticatorMixin.request_count == SETUP_ACTIONS  # auth is on from here
    originals = _patch(state)
    try:
        yield state
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
        requests.post(f"{url}/moto-api/reset-auth", data=b"inf", timeout=10)


def spec(aws: Aws, **extra: Any) -> dict[str, Any]:
    """An aws-ecr spec whose endpoints are this moto server."""
    return {"roleArn": ROLE_ARN, "region": REGION, "stsEndpoint": aws.url,
            "ecrEndpoint": aws.url, "identity": {"audience": "sts.amazonaws.com"}, **extra}


__all__ = ["ACCOUNT", "Aws", "PUSH_POLICY", "REGION", "ROLE_ARN", "aws", "aws_server",
           "registry_password", "spec", "trust_policy"]
