"""An HTTPS endpoint that passes for a Kubernetes API server as far as `kubectl get --raw` goes.

It checks the two credential kinds a rendered kubeconfig can carry:
  * a bearer token (`users[].user.token`), compared in constant time;
  * a client certificate (`client-certificate-data`/`client-key-data`) signed by the client CA.
Clients verify the server against `ca_pem` (`certificate-authority-data`), a CA that exists only
for this server, so a kubeconfig without it, or with another CA, fails.

It also answers a SelfSubjectRulesReview (`POST /apis/authorization.k8s.io/v1/
selfsubjectrulesreviews`, what `kubectl auth can-i --list` sends): the rules set with
`grant(user, namespace, ...)` for that user and namespace, plus what RBAC's default
`system:basic-user` and `system:discovery` roles give every authenticated user, in the
`SubjectRulesReviewStatus` shape of the API reference (`resourceRules`, `nonResourceRules`,
`incomplete`, `evaluationError`). The review is answered, never stored, as on a real server.

As in kube-apiserver, a missing or wrong credential gets 401 with a Status object. One
difference: a client certificate NOT signed by the client CA is refused during the TLS handshake
(Python's ssl verifies any certificate offered under CERT_OPTIONAL), so kubectl reports a TLS
error, and the log records a "tls-rejected" entry, rather than a 401.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import ipaddress
import json
import secrets
import socket
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._net import LOOPBACK, clean_env, remove_tree, serving

VERSION_INFO = {
    "major": "1", "minor": "30", "gitVersion": "v1.30.0", "gitCommit": "0" * 40,
    "gitTreeState": "clean", "buildDate": "2024-04-17T00:00:00Z", "goVersion": "go1.22.2",
    "compiler": "gc", "platform": "linux/amd64",
}
TOKEN_USER = "ci-deployer"

AuthMethod = Literal["token", "client-cert", "tls-rejected", "oidc"]


# --- certificates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Issuer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: _Issuer | None, *,
                 is_ca: bool, usage: x509.ObjectIdentifier | None = None,
                 sans: list[x509.GeneralName] | None = None) -> x509.Certificate:
    """Sign a certificate for `key` (self-signed when `issuer` is None); valid for one day."""
    now = dt.datetime.now(dt.UTC)
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate a little clock skew
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None),
                       critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=is_ca, crl_sign=is_ca,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signer_key, hashes.SHA256())


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: generated in well under a millisecond, unlike RSA, and accepted by Go's TLS.
    return ec.generate_private_key(ec.SECP256R1())


def _new_ca(common_name: str) -> _Issuer:
    key = _new_key()
    return _Issuer(_certificate(_name(common_name), key, None, is_ca=True), key)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _leaf_pems(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[bytes, bytes]:
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


# --- the server ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KubeRequest:
    method: str
    path: str  # without the query string (kubectl appends ?timeout=...)
    auth: AuthMethod | None  # None: no acceptable credential (answered 401)
    user: str | None  # client certificate CN, or the user the token belongs to
    status: int  # 0 for a connection refused during the TLS handshake
    detail: str = ""  # the TLS error, for "tls-rejected"


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def _common_name(peercert: dict[str, Any] | None) -> str | None:
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class KubeApiServer:
    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._server_ca = _new_ca("connc-test-kube-server-ca")
        self._client_ca = _new_ca("connc-test-kube-client-ca")
        self.ca_pem: bytes = self._server_ca.pem
        self.client_ca_pem: bytes = self._client_ca.pem
        self.token = secrets.token_urlsafe(32)
        self._tokens = {self.token: TOKEN_USER}
        self.log: list[KubeRequest] = []
        # user -> namespace -> resourceRules granted there (see `grant`)
        self.rules: dict[str, dict[str, list[dict[str, list[str]]]]] = {}
        self.incomplete = False  # answer as an authorizer that cannot list rules would
        self.forbid_reviews = False  # 403 to every review, as a server that disallows them
        self.reviews: list[dict[str, Any]] = []  # the review objects received
        # OIDC issuers trusted, each with the audience (--oidc-client-id) it must name; the
        # `jti` of each ID token accepted (see `trust_oidc`).
        self._oidc: list[tuple[Any, str]] = []
        self.oidc_tokens: list[str] = []
        self._lock = threading.Lock()
        self.httpd = _KubeHTTPServer((LOOPBACK, 0), self, self._tls_context())
        self.server = f"https://{LOOPBACK}:{self.httpd.server_address[1]}"

    # --- test-facing API -------------------------------------------------------------------

    def add_token(self, user: str) -> str:
        """Another valid bearer token, logged as `user` (the default `.token` is TOKEN_USER)."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = user
        return token

    def trust_oidc(self, issuer: Any, audience: str) -> None:
        """Accept bearer ID tokens of `issuer` (a kit.servers.oidc.OidcIssuer) for `audience`, as
        kube-apiserver's --oidc-issuer-url / --oidc-client-id do: signature, issuer, audience
        and expiry verified; the user is `oidc:` + the token's `sub`."""
        with self._lock:
            self._oidc.append((issuer, audience))

    def make_client_cert(self, cn: str, groups: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
        """(cert_pem, key_pem) for user `cn` (groups become O=, as Kubernetes reads them)."""
        key = _new_key()
        cert = _certificate(_name(cn, groups), key, self._client_ca, is_ca=False,
                            usage=ExtendedKeyUsageOID.CLIENT_AUTH)
        return _leaf_pems(cert, key)

    def make_untrusted_client_cert(self, cn: str = "intruder") -> tuple[bytes, bytes]:
        """A self-signed client certificate: well-formed, but not from the client CA."""
        key = _new_key()
        cert = _certificate(_name(cn), key, None, is_ca=False,
                            usage=ExtendedKeyUsageOID.CLIENT_AUTH)
        return _leaf_pems(cert, key)

    def grant(self, user: str, namespace: str, verbs: list[str], resources: list[str],
              api_groups: tuple[str, ...] = ("",)) -> None:
        """A Role bound to `user` in `namespace`: these verbs on these resources."""
        with self._lock:
            self.rules.setdefault(user, {}).setdefault(namespace, []).append(
                {"verbs": verbs, "apiGroups": list(api_groups), "resources": resources})

    def requests_by(self, auth: AuthMethod) -> list[KubeRequest]:
        return [r for r in self.log if r.auth == auth]

    # --- server internals ------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        key = _new_key()
        sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
                                        x509.DNSName("localhost")]
        cert = _certificate(_name("kube-apiserver"), key, self._server_ca, is_ca=False,
                            usage=ExtendedKeyUsageOID.SERVER_AUTH, sans=sans)
        cert_file, key_file = self._workdir / "server.crt", self._workdir / "server.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(_key_pem(key))
        key_file.chmod(0o600)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_file, key_file)
        # OPTIONAL: ask for a client certificate, verify it against the client CA if one is
        # offered, and let token-only clients through to the bearer check.
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cadata=self.client_ca_pem.decode())
        context.set_alpn_protocols(["http/1.1"])  # no h2: http.server speaks HTTP/1.1 only
        return context

    def authenticate(self, peercert: dict[str, Any] | None,
                     authorization: str | None) -> tuple[AuthMethod | None, str | None]:
        # Certificate first, as kube-apiserver's x509 authenticator runs before token ones.
        # The TLS layer already verified the chain, so any certificate here is trusted.
        if peercert:
            return "client-cert", _common_name(peercert)
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and presented:
            with self._lock:
                tokens = list(self._tokens.items())
            for token, user in tokens:
                if hmac.compare_digest(presented.strip().encode(), token.encode()):
                    return "token", user
            with self._lock:
                trusted = list(self._oidc)
            for issuer, audience in trusted:
                try:
                    claims = issuer.verify(presented.strip(), audience)
                except Exception:  # noqa: BLE001 - jwt.InvalidTokenError and malformed input
                    continue
                with self._lock:
                    self.oidc_tokens.append(str(claims.get("jti")))
                return "oidc", f"oidc:{claims['sub']}"
        return None, None

    @staticmethod
    def route(path: str) -> tuple[int, dict[str, Any]]:
        path = path.partition("?")[0].rstrip("/")
        if path == "/version":
            return 200, VERSION_INFO
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"],
                         "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                         "serverAddress": LOOPBACK}]}
        if path == "/apis":
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
        return 404, _status(404, "NotFound", "the server could not find the requested resource")

    def review(self, user: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """A SelfSubjectRulesReview for `user`: 201 and the review with its status filled."""
        try:
            review = json.loads(body)
        except ValueError:
            return 400, _status(400, "BadRequest", "the object provided is unrecognized")
        if not isinstance(review, dict) or review.get("kind") != "SelfSubjectRulesReview" \
                or review.get("apiVersion") != "authorization.k8s.io/v1":
            return 400, _status(400, "BadRequest", "the object provided is unrecognized")
        spec = review.get("spec")
        namespace = spec.get("namespace") if isinstance(spec, dict) else None
        if not isinstance(namespace, str):
            return 400, _status(400, "BadRequest", "no namespace on request")
        with self._lock:
            self.reviews.append(review)
            granted = list(self.rules.get(user, {}).get(namespace, []))
            incomplete = self.incomplete
        status = {
            "resourceRules": [*granted, *_BASIC_USER_RULES],
            "nonResourceRules": _DISCOVERY_RULES,
            "incomplete": incomplete,
        }
        if incomplete:
            status["evaluationError"] = "webhook authorizer does not support user rule resolution"
        return 201, {**review, "metadata": {"creationTimestamp": None}, "status": status}

    def record(self, request: KubeRequest) -> None:
        with self._lock:
            self.log.append(request)


# What RBAC's default ClusterRoles give every authenticated user (system:basic-user,
# system:discovery), as a real server lists them in every namespace.
_BASIC_USER_RULES = [
    {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
     "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]},
]
_DISCOVERY_RULES = [
    {"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz",
                                           "/livez", "/openapi", "/openapi/*", "/readyz",
                                           "/version", "/version/"]},
]
_REVIEW_PATH = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews"


class _KubeHTTPServer(ThreadingHTTPServer):
    def __init__(self, address: tuple[str, int], app: KubeApiServer,
                 context: ssl.SSLContext) -> None:
        self.app = app
        self.context = context
        super().__init__(address, _KubeHandler)

    def finish_request(self, request: socket.socket | tuple[bytes, socket.socket],
                       client_address: Any) -> None:
        # The TLS handshake runs here, on the connection's own thread rather than in accept():
        # a stalled client cannot hold up others, and a refused certificate gets logged.
        assert isinstance(request, socket.socket)
        request.settimeout(10)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.app.record(KubeRequest("", "", "tls-rejected", None, 0, str(exc)))
            return
        try:
            _KubeHandler(tls, client_address, self)
        finally:
            tls.close()


class _KubeHandler(BaseHTTPRequestHandler):
    server: _KubeHTTPServer
    protocol_version = "HTTP/1.1"  # kubectl keeps connections alive; every reply has a length

    def do_GET(self) -> None:
        app = self.server.app
        assert isinstance(self.connection, ssl.SSLSocket)
        auth, user = app.authenticate(self.connection.getpeercert(),
                                      self.headers.get("Authorization"))
        if auth is None:
            status, body = 401, _status(401, "Unauthorized", "Unauthorized")
        else:
            status, body = app.route(self.path)
        app.record(KubeRequest(self.command, self.path.partition("?")[0], auth, user, status))
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        app = self.server.app
        assert isinstance(self.connection, ssl.SSLSocket)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        auth, user = app.authenticate(self.connection.getpeercert(),
                                      self.headers.get("Authorization"))
        path = self.path.partition("?")[0]
        if auth is None:
            status, answer = 401, _status(401, "Unauthorized", "Unauthorized")
        elif path != _REVIEW_PATH:
            status, answer = 405, _status(405, "MethodNotAllowed",
                                          "the server does not allow this method")
        elif app.forbid_reviews:
            status, answer = 403, _status(403, "Forbidden", "selfsubjectrulesreviews is "
                                                            "forbidden")
        else:
            status, answer = app.review(user or "", body)
        app.record(KubeRequest(self.command, path, auth, user, status))
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the structured `KubeApiServer.log` is what tests read


# --- client-side helpers for tests -----------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write_kubeconfig(path: Path, server: str, *, ca_pem: bytes | None = None,
                     token: str | None = None,
                     client_cert: tuple[bytes, bytes] | None = None) -> Path:
    """Write a one-context kubeconfig (JSON, which kubectl reads as the YAML it is)."""
    cluster: dict[str, str] = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = _b64(ca_pem)
    user: dict[str, str] = {}
    if token is not None:
        user["token"] = token
    if client_cert is not None:
        user["client-certificate-data"] = _b64(client_cert[0])
        user["client-key-data"] = _b64(client_cert[1])
    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": "test", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "current-context": "test",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


def run_kubectl(kubeconfig: Path, args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    """kubectl with only `kubeconfig`: a private HOME, so ~/.kube is never read or written."""
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "--request-timeout=20s", *args],
        # stdin closed: with no credential kubectl prompts for a username and would hang.
        env=clean_env(home), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=60, check=False,
    )


@pytest.fixture
def kube_server() -> Iterator[KubeApiServer]:
    """A fresh HTTPS "API server" on 127.0.0.1 with its own CAs, one token and an empty log.

    Function-scoped: it runs in-process and key generation is EC, so a fresh one costs a few
    milliseconds, and each test gets a request log of its own.
    """
    workdir = Path(tempfile.mkdtemp(prefix="connc-kube-api-"))
    try:
        server = KubeApiServer(workdir)
        with serving(server.httpd, "kube-api"):
            yield server
    finally:
        remove_tree(workdir)


__all__ = [
    "TOKEN_USER",
    "KubeApiServer",
    "KubeRequest",
    "kube_server",
    "run_kubectl",
    "write_kubeconfig",
]
