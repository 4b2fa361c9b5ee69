"""`connc check` for kubernetes connections: `kubectl get --raw /version` through a bundle;
and `--reach`: what the credential may do in its namespace (a SelfSubjectRulesReview)."""

from __future__ import annotations

import json
import shutil
from typing import Any

from connc import privatefiles
from connc.check.probe import (
    Context,
    ProbeFailure,
    Result,
    http_get,
    http_send,
    status_failure,
)
from connc.check.reach import Ask, Grant, Item, Reach, counted, denied_grants, name
from connc.credentials import b64_pem
from connc.findings import printable
from connc.render.context import Resolved


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
    except (ValueError, RecursionError):  # RecursionError: a server's `[[[[...`
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
    verify, credential = _client(resolved, context)
    answer = http_get(target, context, verify=verify, read_json=True, **credential)
    if answer.status != 200:
        return Result(False, status_failure(answer.status), target)
    return Result(True, f"GET /version (kubectl not found): the server"
                        f"{_version(json.dumps(answer.body))} accepted the credential", target)


def _client(resolved: Resolved, context: Context) -> tuple[str | bool | None, dict[str, Any]]:
    """The TLS trust and the credential for connc's own requests: (verify, bearer= or cert=)."""
    spec = resolved.spec
    verify: str | bool | None = None  # REQUESTS_CA_BUNDLE / SSL_CERT_FILE / system trust
    if spec.get("insecureSkipTlsVerify"):
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        verify = False
    elif spec.get("certificateAuthorityData"):
        verify = _write(context, "ca.crt", b64_pem(str(spec["certificateAuthorityData"])))
    if spec.get("auth") == "oidc":  # the job's ID token is the bearer (in CI, or a file)
        if context.identity is None:
            raise ProbeFailure("no ID token here: run in CI or pass --id-token-file")
        identity = spec["identity"]
        bearer = context.identity.token(identity, str(identity["audience"]),
                                        connection=resolved.id).value.reveal()
        context.sent.add(bearer)
        return verify, {"bearer": bearer}
    token = resolved.secret("token")
    if token:
        return verify, {"bearer": token}
    cert, key = resolved.required("clientCertificateData", "clientKeyData")
    return verify, {"cert": (_write(context, "client.crt", b64_pem(cert)),
                             _write(context, "client.key", b64_pem(key)))}


_REVIEW = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews"
_RULES_LIMIT = 200  # rules shown; a namespace's RBAC rarely has more than a few dozen


def reach(resolved: Resolved, context: Context, ask: Ask) -> Reach:
    """POST a SelfSubjectRulesReview for the connection's namespace (`default` when it names
    none, as kubectl does): the server answers with the rules the credential holds there.
    Creating a review changes nothing on the cluster: it is answered and not stored."""
    namespace = str(resolved.spec.get("namespace") or "default")
    target = str(resolved.spec["server"]).rstrip("/") + _REVIEW
    verify, credential = _client(resolved, context)
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
              "spec": {"namespace": namespace}}
    answer = http_send("POST", target, context, verify=verify, json_body=review,
                       read_json=True, max_bytes=1024 * 1024, **credential)
    if answer.status in (403, 404):
        return Reach(target, f"cannot be asked: the server refused the rules review "
                             f"(HTTP {answer.status}), so what the credential may do in "
                             f"namespace {namespace} is unknown", "rules", asked=False,
                     grants=_grants(ask, namespace))
    if answer.status not in (200, 201):
        raise ProbeFailure(status_failure(answer.status), target)
    status = answer.body.get("status") if isinstance(answer.body, dict) else None
    if not isinstance(status, dict):
        raise ProbeFailure("the answer is not a SelfSubjectRulesReview (not a Kubernetes "
                           "API server?)", target)
    items = [_resource_rule(rule) for rule in status.get("resourceRules") or ()
             if isinstance(rule, dict)]
    items += [_non_resource_rule(rule) for rule in status.get("nonResourceRules") or ()
              if isinstance(rule, dict)]
    wild = [item for item in items if item.wildcard]
    warnings = [f"the credential may use wildcards in namespace {namespace} "
                f"({'; '.join(item.name for item in wild[:3])}{'; ...' if len(wild) > 3 else ''}"
                f"): bind it to a Role that lists the verbs and resources its pipelines use"
                ] if wild else []
    notes = ["the server says the list is incomplete (an authorizer that cannot list rules): "
             "what is listed is granted, what is not may be granted too"] \
        if status.get("incomplete") or status.get("evaluationError") else []
    summary = (f"in namespace {namespace}: {counted(len(items), 'rule')}"
               + (f", {len(wild)} with wildcards" if wild else ""))
    return Reach(target, summary, "rules", items=tuple(items[:_RULES_LIMIT]), total=len(items),
                 complete=len(items) <= _RULES_LIMIT, grants=_grants(ask, namespace),
                 warnings=tuple(warnings), notes=tuple(notes))


def _grants(ask: Ask, namespace: str) -> tuple[Grant, ...]:
    return tuple([Grant(use.pipeline, f"all of it: the kubeconfig's context is namespace "
                                      f"{namespace}, and connc narrows nothing further")
                  for use in ask.allowed()] + denied_grants(ask))


def _words(values: object) -> list[str]:
    """The strings of a rule's list, printable; "" (the core API group) shown as `""`."""
    if not isinstance(values, list):
        return []
    return [name(v) or "?" if v != "" else '""' for v in values if isinstance(v, str)]


def _resource_rule(rule: dict[str, Any]) -> Item:
    verbs, groups, resources = (_words(rule.get(key))
                                for key in ("verbs", "apiGroups", "resources"))
    names = _words(rule.get("resourceNames"))
    shown_groups = ", ".join(groups) or "(none)"
    text = (f"{', '.join(verbs) or '(no verbs)'} on {', '.join(resources) or '(none)'} "
            f"(API groups {shown_groups})" + (f" named {', '.join(names)}" if names else ""))
    return Item(text, wildcard="*" in verbs or "*" in groups or "*" in resources)


def _non_resource_rule(rule: dict[str, Any]) -> Item:
    verbs, urls = _words(rule.get("verbs")), _words(rule.get("nonResourceURLs"))
    return Item(f"{', '.join(verbs) or '(no verbs)'} on {', '.join(urls) or '(none)'} "
                f"(non-resource URLs)", wildcard="*" in verbs or "*" in urls)


def _write(context: Context, name: str, pem: bytes | None) -> str:
    if pem is None:
        raise ProbeFailure(f"{name}: the connection's data is not base64-encoded PEM")
    path = context.workdir / name
    privatefiles.replace(path, pem)
    return str(path)
