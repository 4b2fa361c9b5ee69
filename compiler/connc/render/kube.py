"""kube/config: one cluster, user and context per kubernetes connection.

Serialised from data (never templated). The current context is the first kubernetes
connection in the pipeline's `uses`, so a pipeline with one cluster needs no `--context`.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from connc.render.context import Output, Resolved


def write(items: list[Resolved], output: Output) -> None:
    clusters, users, contexts = [], [], []
    for resolved in items:
        spec = resolved.spec
        cluster: dict[str, Any] = {"server": spec["server"]}
        if spec.get("certificateAuthorityData"):
            cluster["certificate-authority-data"] = "".join(spec["certificateAuthorityData"].split())
        if spec.get("insecureSkipTlsVerify"):
            cluster["insecure-skip-tls-verify"] = True
        clusters.append({"name": resolved.id, "cluster": cluster})
        users.append({"name": resolved.id, "user": _user(resolved, output)})
        context: dict[str, Any] = {"cluster": resolved.id, "user": resolved.id}
        if spec.get("namespace"):
            context["namespace"] = spec["namespace"]
        contexts.append({"name": resolved.id, "context": context})
        output.record(resolved, "kube/config", context=resolved.id, **_expiry(resolved))
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": clusters,
        "users": users,
        "contexts": contexts,
        "current-context": contexts[0]["name"],
    }
    output.files.add("kube/config", yaml.safe_dump(config, sort_keys=False))
    output.env["KUBECONFIG"] = output.path("kube/config")


def _user(resolved: Resolved, output: Output) -> dict[str, Any]:
    if resolved.exchanged is not None:
        return _oidc_user(resolved, output)
    token = resolved.secret("token")
    if token:
        output.mask(token, where=resolved.id)
        return {"token": token}
    cert, key = resolved.required("clientCertificateData", "clientKeyData")
    key_data = "".join(key.split())  # base64 as wrapped by `base64`, joined as kubectl wants
    output.mask(key_data, where=resolved.id)
    return {"client-certificate-data": "".join(cert.split()), "client-key-data": key_data}


def _expiry(resolved: Resolved) -> dict[str, object]:
    """auth: oidc: how the token is kept fresh, and when a static one expires."""
    exchanged = resolved.exchanged
    if exchanged is None:
        return {}
    from connc.identity.token import stamp

    return {"refresh": exchanged.refresh,
            "expiresAt": stamp(exchanged.expires_at) if exchanged.expires_at else None}


def _oidc_user(resolved: Resolved, output: Output) -> dict[str, Any]:
    """auth: oidc: the job's ID token as the bearer; static, or fetched by kubectl itself
    through `connc id-token` whenever it needs one (client-go's exec credential plugin)."""
    assert resolved.exchanged is not None
    if resolved.exchanged.refresh == "static":
        token = resolved.exchanged_value("token")
        output.mask(token, where=resolved.id)
        return {"token": token}
    identity = resolved.spec["identity"]
    args = ["-I", "-m", "connc", "id-token", "--connection", resolved.id,
            "--audience", str(identity["audience"]),
            "--provider", str(identity.get("provider", "auto"))]
    if identity.get("issuer"):
        args += ["--issuer", str(identity["issuer"])]
    # This interpreter (`-I`: no PYTHONPATH or user site from the job's environment), as the
    # git helper's refresh does: the connc that rendered the bundle is the one kubectl runs.
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                     "args": [*args, "--exec-credential"], "interactiveMode": "Never",
                     "provideClusterInfo": False}}
