"""Seals (docs/render.md, Seals): a credential renders only for the plaintext a key holder approved.

Real sops with the test key; each attack is an edit without a key, as a pull request makes
it. A refusal leaves nothing behind, names the field, and never shows a secret.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kit.build import MEMBERS, connection, key_env, make_repo, pipeline, write
from kit.run import connc
from kit.servers.hostile import recording_server

CANARY = "canary-4a1f-secret-value"
K8S = "connections.d/k8s.sops.yaml"
BOBS = "connections.d/bobs.sops.yaml"


def _repo(root: Path, *, config: dict[str, object] | None = None,
          unsealed: tuple[str, ...] = ()) -> Path:
    repo = make_repo(root, connections={
        "k8s": connection("k8s", type_="kubernetes", spec={"server": "https://k8s.example.com"},
                          credential={"token": CANARY}),
        "npm": connection("npm", type_="packages",
                          spec={"format": "npm", "url": "https://npm.example.com/"},
                          credential={"token": CANARY + "-npm"}),
        "reg": connection("reg", type_="container-registry",
                          spec={"registry": "registry.example.com"},
                          credential={"username": "robot", "password": CANARY + "-reg"}),
        "git": connection("git", type_="git", spec={"url": "https://git.example.com/org/"},
                          credential={"username": "ci", "password": CANARY + "-git"}),
        "bobs": connection("bobs", owner="bob", credential={"token": CANARY + "-bob"}),
        "open": connection("open", visibility="public", credential={"token": "open-token"}),
    }, pipelines={
        "alice": pipeline("alice", "k8s", "npm", "reg", "git"),
        "carol": pipeline("carol", "open", owner="carol"),
    }, members={**MEMBERS, "users": {**MEMBERS["users"], "carol": {}}})
    if config is not None:
        write(repo, "connc.yaml", {"apiVersion": "connc/v1", "kind": "Config", **config})
    for relpath in unsealed:
        _drop_seal(repo / relpath)
    return repo


def _drop_seal(path: Path) -> None:
    # Only sops can remove an encrypted value (the MAC covers it): do it as a key holder.
    from connc import process
    from connc.sops import binary

    relpath = str(path.relative_to(path.parent.parent))
    binary.run(["unset", "--", relpath, '["credential"]["connc-seal"]'], repo=path.parent.parent,
               relpath=relpath, deadline=process.Deadline(60))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", key_env()["SOPS_AGE_KEY_FILE"])
    return _repo(tmp_path / "repo")


def render(repo: Path, pipeline_id: str, out: Path) -> tuple[int, str]:
    ran = connc("render", pipeline_id, "--repo", repo, "--out", out, timeout=60)
    output = ran.stdout + ran.stderr
    assert CANARY not in output and "Traceback" not in output
    return ran.returncode, output


def edit(repo: Path, relpath: str, old: str, new: str) -> None:
    path = repo / relpath
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


# ---------------------------------------------------------------------------- endpoints


@pytest.mark.parametrize(("relpath", "old", "new", "field"), [
    (K8S, "server: https://k8s.example.com", "server: https://evil.example", "spec.server"),
    (K8S, "server: https://k8s.example.com",
     "server: https://k8s.example.com\n    insecureSkipTlsVerify: true",
     "spec.insecureSkipTlsVerify"),
    ("connections.d/npm.sops.yaml", "url: https://npm.example.com/",
     "url: https://npm.evil.example/", "spec.url"),
    ("connections.d/reg.sops.yaml", "registry: registry.example.com",
     "registry: registry.evil.example", "spec.registry"),
    ("connections.d/git.sops.yaml", "url: https://git.example.com/org/",
     "url: https://git.evil.example/org/", "spec.url"),
    (K8S, "owner: alice", "owner: bob", "owner"),
])
def test_an_edited_endpoint_is_refused_until_resealed(repo: Path, tmp_path: Path,
                                                      relpath: str, old: str, new: str,
                                                      field: str) -> None:
    assert render(repo, "alice", tmp_path / "before")[0] == 0
    edit(repo, relpath, old, new)
    if field == "owner":  # the pipeline must still be in scope: bob shares it with alice
        edit(repo, relpath, "visibility: private", "visibility: public")
    code, output = render(repo, "alice", tmp_path / "after")
    assert code == 1 and not (tmp_path / "after").exists()
    assert "changed since the credential was sealed" in output and field in output
    assert f"connc seal {Path(relpath).name.split('.')[0]}" in output
    # A key holder approves the change: it renders again.
    sealed = connc("seal", Path(relpath).name.split(".")[0], "--repo", repo, timeout=60)
    assert sealed.returncode == 0, sealed.stderr
    assert field in sealed.stdout and CANARY not in sealed.stdout + sealed.stderr
    assert render(repo, "alice", tmp_path / "resealed")[0] == 0


def test_narrowing_and_labels_need_no_reseal(repo: Path, tmp_path: Path) -> None:
    edit(repo, "connections.d/open.sops.yaml", "visibility: public",
         "visibility: custom\n    members:\n        - user:carol")
    edit(repo, "connections.d/open.sops.yaml", "name: open", "name: Open, renamed")
    edit(repo, K8S, "name: k8s", "name: k8s\n    description: the cluster\n"
                                 "    expiresAt: 2099-01-01")
    assert render(repo, "carol", tmp_path / "carol")[0] == 0
    assert render(repo, "alice", tmp_path / "alice")[0] == 0
    # Back up to the sealed scope (public) is within what was approved ...
    edit(repo, "connections.d/open.sops.yaml", "- user:carol", "- user:carol\n        - user:bob")
    assert render(repo, "carol", tmp_path / "back")[0] == 0
    # ... beyond it is not: alice's private cluster made public.
    edit(repo, K8S, "visibility: private", "visibility: public")
    code, output = render(repo, "alice", tmp_path / "wider")
    assert code == 1 and "scope.visibility" in output


def test_a_reseal_on_a_dry_run_writes_nothing(repo: Path) -> None:
    edit(repo, K8S, "server: https://k8s.example.com", "server: https://other.example")
    before = (repo / K8S).read_text()
    ran = connc("seal", "--all", "--dry-run", "--repo", repo, timeout=60)
    assert ran.returncode == 0 and "k8s: would seal; changed since the last seal: spec.server " \
        "(now 'https://other.example')" in ran.stdout
    assert "bobs: the seal is up to date" in ran.stdout
    assert (repo / K8S).read_text() == before


def test_sealing_needs_a_key(repo: Path) -> None:
    env = key_env()
    del env["SOPS_AGE_KEY_FILE"]
    ran = connc("seal", "k8s", "--repo", repo, env=env, timeout=60)
    assert ran.returncode == 2 and "no usable key" in ran.stderr


# ---------------------------------------------------------------------------- copies


def _copy_bobs_credential(repo: Path, encode: str) -> None:
    """Write `open` (public) with bob's private credential and sops block, re-encoded."""
    text = (repo / BOBS).read_text()
    text = text.replace("id: bobs", "id: open").replace("owner: bob", "owner: alice")
    text = text.replace("visibility: private", "visibility: public")
    if "iv" in encode:  # other unused bits in the iv's last base64 character: same bytes
        def flip(match: re.Match[str]) -> str:
            iv = match.group(1)
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
            last = alphabet[alphabet.index(iv[-1]) ^ 1]
            return f"iv:{iv[:-1]}{last}=,"
        text, count = re.subn(r"iv:([A-Za-z0-9+/]+)=,", flip, text)
        assert count >= 2  # the token and the MAC
    if "armour" in encode:  # the age armour with CRLF line endings, as a quoted scalar
        def crlf(match: re.Match[str]) -> str:
            lines = [line.strip() for line in match.group(2).strip("\n").splitlines()]
            return match.group(1) + '"' + "\\r\\n".join(lines) + '\\r\\n"\n'
        text, count = re.subn(r"(\n\s+enc: )\|\n((?:\s{12}.*\n)+)", crlf, text)
        assert count == 1
    (repo / "connections.d/open.sops.yaml").write_text(text)


# Both re-encodings at once leave no ciphertext or wrapped key with the same text as bob's.
@pytest.mark.parametrize("encode", ["plain", "iv", "armour", "iv+armour"])
def test_a_copied_credential_never_renders_under_the_new_name(repo: Path, tmp_path: Path,
                                                              encode: str) -> None:
    _copy_bobs_credential(repo, encode)
    code, output = render(repo, "carol", tmp_path / "out")
    assert code == 1 and not (tmp_path / "out").exists()
    assert "sealed for another connection" in output
    # Keyless, validate sees the copy however it is encoded; with the key, the seal too.
    keyless = connc("validate", "--repo", repo, "--format", "json", timeout=60)
    assert '"code": "CONNC410"' in keyless.stdout
    decrypted = connc("validate", "--repo", repo, "--decrypt", timeout=60)
    assert "CONNC608" in decrypted.stdout and "sealed for another connection" in decrypted.stdout
    assert CANARY not in decrypted.stdout + decrypted.stderr


# ---------------------------------------------------------------------------- policy


def test_require_seals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", key_env()["SOPS_AGE_KEY_FILE"])
    lax = _repo(tmp_path / "lax", unsealed=(K8S,))
    assert render(lax, "alice", tmp_path / "lax-out")[0] == 0
    warned = connc("validate", "--repo", lax, timeout=60)
    assert warned.returncode == 0 and "warning CONNC413" in warned.stdout
    strict = _repo(tmp_path / "strict", config={"requireSeals": True}, unsealed=(K8S,))
    code, output = render(strict, "alice", tmp_path / "strict-out")
    assert code == 1 and "no seal" in output and "requireSeals" in output
    assert not (tmp_path / "strict-out").exists()
    refused = connc("validate", "--repo", strict, timeout=60)
    assert refused.returncode == 1 and "error CONNC413" in refused.stdout
    assert connc("seal", "k8s", "--repo", strict, timeout=60).returncode == 0
    assert render(strict, "alice", tmp_path / "sealed-out")[0] == 0


# ---------------------------------------------------------------------------- check


def test_check_sends_nothing_for_a_mismatched_seal(repo: Path) -> None:
    with recording_server() as server:
        edit(repo, "connections.d/npm.sops.yaml", "url: https://npm.example.com/",
             f"url: {server.url()}/")
        ran = connc("check", "npm", "--repo", repo, "--timeout", "2", timeout=60)
        assert ran.returncode == 1 and "changed since the credential was sealed" in ran.stdout
        assert server.seen == []  # the credential went nowhere
        assert CANARY not in ran.stdout + ran.stderr
        # Resealed by a key holder, check asks the server.
        assert connc("seal", "npm", "--repo", repo, timeout=60).returncode == 0
        connc("check", "npm", "--repo", repo, "--timeout", "2", timeout=60)
        assert server.seen
