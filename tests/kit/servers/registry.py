"""A real Docker registry (Debian's `docker-registry`, distribution 2.8) with htpasswd auth.

HOW SKOPEO FINDS CREDENTIALS (skopeo 1.9.3 with containers/image 5.23, Debian bookworm; found
by running skopeo against this server, and pinned by tests in tests/core/test_servers.py; the man
page containers-auth.json(5) does not mention DOCKER_CONFIG, but the code does honour it):

  skopeo reads docker config.json-format files ({"auths": {"HOST": {"auth": b64(user:pass)}}})
  and takes the FIRST file that has an entry for the registry, in this order:
    1. `--authfile FILE` (`--src-authfile`/`--dest-authfile` for copy); if not given, the
       REGISTRY_AUTH_FILE environment variable; if unset, ${XDG_RUNTIME_DIR}/containers/auth.json
    2. ${XDG_CONFIG_HOME:-$HOME/.config}/containers/auth.json
    3. $DOCKER_CONFIG/config.json when DOCKER_CONFIG is set -- YES, DOCKER_CONFIG is honoured --
       and then $HOME/.docker/config.json is NOT read; otherwise $HOME/.docker/config.json
    4. $HOME/.dockercfg
  A wrong password in an earlier file is not retried with a later one: the command fails.

  So the product bundle's DOCKER_CONFIG=OUT/docker works with plain skopeo, provided nothing in
  (1) or (2) has an entry for the same registry: tests must point XDG_RUNTIME_DIR and
  XDG_CONFIG_HOME at empty directories (`_net.clean_env` does) and leave REGISTRY_AUTH_FILE
  unset. `--authfile OUT/docker/config.json` is the explicit, order-proof alternative.

The fixture never puts the password in argv: htpasswd reads it from stdin (-i) and skopeo's own
push reads a temporary auth file.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import io
import json
import secrets
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ._net import (
    LOOPBACK,
    ServerStartError,
    clean_env,
    free_port,
    log_tail,
    popen_server,
    remove_tree,
    stop_process,
    wait_until_listening,
)

REGISTRY_BIN = "/usr/bin/docker-registry"
REALM = "connc-test-registry"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def docker_config_json(host: str, username: str, password: str) -> str:
    """A docker config.json granting `username` on `host`: the format skopeo's --authfile reads."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return json.dumps({"auths": {host: {"auth": auth}}}, indent=2)


def run_skopeo(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", *args], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, check=False)


# --- a minimal OCI image layout, built in Python -------------------------------------------


def _blob(layout: Path, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(data)
    return digest, len(data)


def _layer_tar(payload: bytes) -> bytes:
    """One file in an uncompressed tar, with fixed metadata so the digest is reproducible."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("connc-test.txt")
        info.size, info.mtime, info.mode = len(payload), 0, 0o644
        tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def write_oci_layout(layout: Path, tag: str, payload: bytes) -> str:
    """Write a one-layer image tagged `tag` as an OCI layout at `layout`; return its digest."""
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    tar = _layer_tar(payload)
    layer_digest, layer_size = _blob(layout, gzip.compress(tar, mtime=0))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
    }
    config_digest, config_size = _blob(layout, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer_size}],
    }
    manifest_digest, manifest_size = _blob(layout, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    }
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return manifest_digest


# --- the server ----------------------------------------------------------------------------


def _write_htpasswd(path: Path, username: str, password: str, env: dict[str, str]) -> None:
    # -B bcrypt (the only hash distribution accepts), -i password from stdin, not argv.
    proc = subprocess.run(["htpasswd", "-c", "-i", "-B", str(path), username],
                          input=password, env=env, capture_output=True, text=True,
                          timeout=30, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"htpasswd failed ({proc.returncode}): {proc.stderr}")


def _registry_config(workdir: Path, port: int) -> dict[str, object]:
    # JSON is YAML, so the config needs no YAML writer.
    return {
        "version": "0.1",
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "storage")},
            "delete": {"enabled": True},
            # No background upload purger: nothing to purge in a test and one goroutine less.
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"{LOOPBACK}:{port}", "secret": secrets.token_hex(16)},
        "auth": {"htpasswd": {"realm": REALM, "path": str(workdir / "htpasswd")}},
    }


@dataclass
class RegistryServer:
    host: str  # "127.0.0.1:PORT", as it appears in image references and config.json keys
    username: str
    password: str = field(repr=False)  # keep it out of pytest's failure reports
    log_path: Path = field(default=Path())
    _workdir: Path = field(default=Path(), repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def write_docker_config(self, path: Path, password: str | None = None) -> Path:
        """Write a config.json for this registry (with the right password unless one is given)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(docker_config_json(self.host, self.username,
                                           self.password if password is None else password))
        path.chmod(0o600)
        return path

    def push_test_image(self, repo: str, tag: str = "latest") -> str:
        """Push a tiny one-layer image as HOST/repo:tag; return that reference."""
        scratch = Path(tempfile.mkdtemp(prefix="push-", dir=self._workdir))
        try:
            layout = scratch / "layout"
            write_oci_layout(layout, tag, f"connc test image {repo}:{tag}\n".encode())
            authfile = self.write_docker_config(scratch / "auth.json")
            reference = f"{self.host}/{repo}:{tag}"
            # --insecure-policy: the fixture copies an image it just built, so the host's
            # signature policy (/etc/containers/policy.json, maybe absent) has nothing to say.
            proc = run_skopeo(
                ["--insecure-policy", "copy", "--dest-tls-verify=false",
                 "--dest-authfile", str(authfile), f"oci:{layout}:{tag}", f"docker://{reference}"],
                clean_env(scratch),
            )
            if proc.returncode != 0:
                raise RuntimeError(f"skopeo copy to {reference} failed: {proc.stderr}")
            return reference
        finally:
            remove_tree(scratch)


def _probe(host: str, log_path: Path) -> None:
    """Check that what listens is a registry (not another process that took the port)."""
    conn = http.client.HTTPConnection(host, timeout=5)
    try:
        conn.request("GET", "/v2/")
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    if response.status != 401 or not response.getheader("Docker-Distribution-Api-Version"):
        raise ServerStartError(f"{host} answered /v2/ with {response.status}, not a registry's "
                               f"401; registry log tail:\n{log_tail(log_path)}")


def _launch(workdir: Path, env: dict[str, str]) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    config = workdir / "config.yml"
    config.write_text(json.dumps(_registry_config(workdir, port), indent=2))
    log_path = workdir / "registry.log"
    proc = popen_server([REGISTRY_BIN, "serve", str(config)], log_path, env)
    host = f"{LOOPBACK}:{port}"
    try:
        wait_until_listening(port, proc, log_path, "docker-registry")
        _probe(host, log_path)
    except BaseException:
        stop_process(proc)
        raise
    return host, proc


def start_registry(workdir: Path, username: str,
                   password: str) -> tuple[RegistryServer, subprocess.Popen[bytes]]:
    """Start docker-registry in `workdir`; the caller must stop_process() the returned process."""
    env = clean_env(workdir)  # from scratch: REGISTRY_* variables would override the config
    _write_htpasswd(workdir / "htpasswd", username, password, env)
    for attempt in range(3):
        try:
            host, proc = _launch(workdir, env)
            break
        except ServerStartError as exc:
            # free_port() cannot reserve the port; if something took it meanwhile, pick again.
            if "address already in use" not in str(exc) or attempt == 2:
                raise
    return RegistryServer(host, username, password, workdir / "registry.log", workdir), proc


@pytest.fixture(scope="session")
def registry_server() -> Iterator[RegistryServer]:
    """A docker-registry on 127.0.0.1 with one account; images pushed persist for its lifetime.

    Session scope, because it is a real process and tests only add uniquely named repositories,
    so sharing couples nothing. Note that pytest registers an imported fixture once per
    importing module, so in practice there is one registry per module that imports it.
    """
    workdir = Path(tempfile.mkdtemp(prefix="connc-registry-"))
    try:
        server, proc = start_registry(workdir, "ci-pusher", secrets.token_urlsafe(18))
        try:
            yield server
        finally:
            stop_process(proc)
    finally:
        remove_tree(workdir)


__all__ = ["RegistryServer", "docker_config_json", "registry_server", "run_skopeo",
           "start_registry", "write_oci_layout"]
