"""The probes of `connc check` that run the user's own clients: git and kubectl.

Each renders a bundle of its one connection and runs the client after `. BUNDLE/env`, so a
pass proves the bundle a pipeline would get, not only the credential. The clients' stderr is
matched against known messages (in the C locale) and never shown: it can quote a URL or a
remote's text.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from connc.pem import b64_pem
from connc.probes import Context, ProbeFailure, Result, http_get, printable, status_failure
from connc.render.context import Resolved

# --- git -----------------------------------------------------------------------------------

_UPLOAD_PACK = "application/x-git-upload-pack-advertisement"


def git(resolved: Resolved, context: Context) -> Result:
    url = str(resolved.spec["url"])
    if shutil.which("git") is None:
        raise ProbeFailure("git is not installed here; git connections are checked with it")
    bundle = context.bundle(resolved)
    if url.startswith("ssh://"):
        return _git_ssh(url, bundle, context)
    return _git_https(url, bundle, context)


def _git_https(url: str, bundle: Path, context: Context) -> Result:
    """Smart-HTTP discovery with the credential the bundle's helper gives for `url`, sent up
    front (git itself waits for a 401, so a public repository would prove nothing); then, for
    a repository, `git ls-remote` through the bundle."""
    basic = _helper_credential(url, bundle, context)
    answer = http_get(url.rstrip("/") + "/info/refs", context, basic=basic,
                      params={"service": "git-upload-pack"},
                      headers={"User-Agent": "git/2 (connc check)"})  # hosts serve git/ agents
    if answer.status not in (200, 404):
        return Result(False, status_failure(answer.status), url)
    if answer.status == 404 or not answer.headers.get("Content-Type", "").startswith(_UPLOAD_PACK):
        return Result(True, "credential accepted; the url is a path prefix, not a repository, "
                            "so access to a repository is not proven", url)
    listed = context.run(bundle, ["git", "ls-remote", url, "HEAD"])
    if listed.returncode != 0:
        return Result(False, "the service accepted the credential, but git ls-remote through the "
                             f"bundle failed: {_git_failure(listed.stderr)}", url)
    return Result(True, "git ls-remote through the bundle succeeded", url)


def _helper_credential(url: str, bundle: Path, context: Context) -> tuple[str, str]:
    """What the bundle's credential helper answers git for `url` (`git credential fill`)."""
    parts = urlsplit(url)
    request = f"protocol={parts.scheme}\nhost={parts.netloc}\n"
    if parts.path.strip("/"):
        request += f"path={parts.path.strip('/')}\n"
    filled = context.run(bundle, ["git", "credential", "fill"], stdin=request + "\n")
    answer = dict(line.split("=", 1) for line in filled.stdout.splitlines() if "=" in line)
    if filled.returncode != 0 or not answer.get("username") or not answer.get("password"):
        raise ProbeFailure("the bundle's credential helper gave git no credential for the url "
                           "(a connc bug; please report it)")
    return answer["username"], answer["password"]


def _git_ssh(url: str, bundle: Path, context: Context) -> Result:
    listed = context.run(bundle, ["git", "ls-remote", url, "HEAD"])
    if listed.returncode == 0:
        return Result(True, "git ls-remote over ssh with the bundle's key succeeded", url)
    failure = _ssh_failure(listed.stderr)
    if failure:
        return Result(False, failure, url)
    # ssh got through (its own failures are matched above), then the remote found no
    # repository: an ssh url may be a path prefix, as an https one may.
    return Result(True, "the server accepted the key; git found no repository it may read at "
                        "the url (a path prefix?), so access to a repository is not proven", url)


_SSH_FAILURES = (
    ("Permission denied", "auth refused: the server did not accept the key"),
    ("Host key verification failed", "the server's host key does not match spec.knownHosts"),
    ("Could not resolve hostname", "unreachable: the host name does not resolve"),
    ("Connection refused", "unreachable: connection refused"),
    ("No route to host", "unreachable: no route to host"),
    ("Network is unreachable", "unreachable: network is unreachable"),
    ("timed out", "timeout: the server did not answer"),
    ("kex_exchange_identification", "unreachable: the server closed the connection"),
    ("Connection closed", "unreachable: the server closed the connection"),
    ("Connection reset", "unreachable: the server reset the connection"),
    ("Load key", "ssh could not load the bundle's key"),
    ("Bad configuration option", "ssh refused the bundle's options (a connc bug?)"),
)


def _ssh_failure(stderr: str) -> str | None:
    return next((reason for pattern, reason in _SSH_FAILURES if pattern in stderr), None)


_GIT_FAILURES = (
    ("Authentication failed", "auth refused (HTTP 401)"),
    ("returned error: 403", "auth refused (HTTP 403)"),
    ("not found", "not found (HTTP 404)"),
    ("SSL", "TLS error (for a private CA set GIT_SSL_CAINFO)"),
    ("certificate", "TLS error (for a private CA set GIT_SSL_CAINFO)"),
    ("Could not resolve host", "unreachable: the host name does not resolve"),
    ("Failed to connect", "unreachable: cannot connect"),
    ("timed out", "timeout"),
    ("too slow", "timeout"),
)


def _git_failure(stderr: str) -> str:
    return next((reason for pattern, reason in _GIT_FAILURES if pattern in stderr),
                "git failed")


# --- Kubernetes ----------------------------------------------------------------------------


def kubernetes(resolved: Resolved, context: Context) -> Result:
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
    return f" ({printable(version)})" if isinstance(version, str) and version else ""


_KUBECTL_FAILURES = (
    ("Unauthorized", "auth refused (HTTP 401)"),
    ("Forbidden", "auth refused (HTTP 403)"),
    ("remote error: tls", "TLS error: the server refused the client certificate"),
    ("x509", "TLS error: the server's certificate is not trusted (certificateAuthorityData, "
             "or SSL_CERT_FILE for the system trust)"),
    ("tls:", "TLS error"),
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
