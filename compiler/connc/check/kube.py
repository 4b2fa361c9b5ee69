"""`connc check` for kubernetes connections: `kubectl get --raw /version` through a bundle."""

from __future__ import annotations

import json
import shutil

from connc.check.probe import Context, ProbeFailure, Result, http_get, status_failure
from connc.credentials import b64_pem
from connc.findings import printable
from connc.render.context import Resolved

TYPES = frozenset({"kubernetes"})


def probe(resolved: Resolved, context: Context) -> Result:
    """`kubectl get --raw /version` with the bundle's kubeconfig; an HTTPS GET without kubectl.

    /version is readable by every authenticated user (and often anonymously), but a token or
    client certificate the server does not accept gets 401 on it all the same: a pass proves
    the server, its TLS and the authentication, not what the credential may do (that is
    `kubectl auth can-i`).
    """
    target = str(resolved.spec["server"]).rstrip("/") + "/version"
    if shutil.which("kubectl") is None:
        return _version_over_https(resolved, target, context)
    bundle = context.bundle(resolved)
    ran = context.run(bundle, [
        "kubectl", "--context", resolved.id, "--cache-dir", str(context.workdir / "kube-cache"),
        f"--request-timeout={context.timeout:g}s", "get", "--raw", "/version"])
    if ran.returncode != 0:
        return Result(False, _kubectl_failure(ran.stderr), target)
    return Result(True, f"kubectl get --raw /version: the server{_version(ran.stdout)} "
                        f"accepted the credential", target)


def _version(text: str | None) -> str:
    try:
        data = json.loads(text or "")
    except ValueError:
        return ""
    version = data.get("gitVersion") if isinstance(data, dict) else None
    return f" ({printable(version, 80)})" if isinstance(version, str) and version else ""


_KUBECTL_FAILURES = (
    ("Unauthorized", "auth refused (HTTP 401)"),
    ("Forbidden", "auth refused (HTTP 403)"),
    ("remote error: tls", "TLS error: the server refused the client certificate"),
    ("x509", "TLS error: the server's certificate is not trusted (certificateAuthorityData, "
             "or SSL_CERT_FILE for the system trust)"),
    ("tls:", "TLS error"),
    # A TLS 1.3 server that refuses the client certificate does so after the client thinks
    # the handshake is over; whether kubectl reads the alert or a reset is a race.
    ("connection reset by peer", "TLS error or unreachable: the server reset the connection "
                                 "(as a server does that refuses the client certificate)"),
    ("refused", "unreachable: connection refused"),
    ("no such host", "unreachable: the host name does not resolve"),
    ("imeout", "timeout"),  # Timeout, timeout, Client.Timeout exceeded
    ("deadline exceeded", "timeout"),
)


def _kubectl_failure(stderr: str) -> str:
    return next((reason for pattern, reason in _KUBECTL_FAILURES if pattern in stderr),
                "kubectl failed")


def _version_over_https(resolved: Resolved, target: str, context: Context) -> Result:
    spec = resolved.spec
    verify: str | bool | None = None  # REQUESTS_CA_BUNDLE / SSL_CERT_FILE / system trust
    if spec.get("insecureSkipTlsVerify"):
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        verify = False
    elif spec.get("certificateAuthorityData"):
        verify = _write(context, "ca.crt", b64_pem(str(spec["certificateAuthorityData"])))
    token = resolved.secret("token")
    if token:
        answer = http_get(target, context, bearer=token, verify=verify, read_json=True)
    else:
        cert, key = resolved.required("clientCertificateData", "clientKeyData")
        files = (_write(context, "client.crt", b64_pem(cert)),
                 _write(context, "client.key", b64_pem(key)))
        answer = http_get(target, context, cert=files, verify=verify, read_json=True)
    if answer.status != 200:
        return Result(False, status_failure(answer.status), target)
    return Result(True, f"GET /version (kubectl not found): the server"
                        f"{_version(json.dumps(answer.body))} accepted the credential", target)


def _write(context: Context, name: str, pem: bytes | None) -> str:
    if pem is None:
        raise ProbeFailure(f"{name}: the connection's data is not base64-encoded PEM")
    path = context.workdir / name
    path.touch(mode=0o600)
    path.write_bytes(pem)
    return str(path)
