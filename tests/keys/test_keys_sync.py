"""`connc keys sync` with the real sops and real age keys: derived recipients, a plan first,
sops agreeing afterwards, a dry run that changes nothing, nothing wider than scope, and whole
files when interrupted."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from keykit import SENTINEL, files, recipients_of

from connc.keys import sync
from connc.process import Deadline
from connc.sops import binary
from connc.validate.keyring import Keyring
from kit.build import REPO_ROOT, TEST_KEY_FILE, TEST_RECIPIENT, sops_env
from kit.keys import new_age_key
from kit.run import connc, popen


def keys_sync(repo: Path, *args: str, key: Path | None = TEST_KEY_FILE
              ) -> subprocess.CompletedProcess[str]:
    return connc("keys", "sync", "--repo", str(repo), *args, key=key, cwd=REPO_ROOT)


def test_before_the_sync_validate_names_the_pipelines_that_cannot_decrypt(repo: Path) -> None:
    ran = connc("validate", "--repo", str(repo), key=None, cwd=REPO_ROOT)
    assert ran.returncode == 1
    assert "pipelines.d/deploy.yaml" in ran.stdout and "CONNC414" in ran.stdout
    assert "connc keys sync db" in ran.stdout
    assert "CONNC408" in ran.stdout  # carol's key on spare


def test_the_sync_derives_the_keys_and_sops_agrees(repo: Path, estate: dict[str, Any]) -> None:
    deploy_key, deploy = estate["deploy"]
    ops_key, ops = estate["ops"]
    ran = keys_sync(repo, "--all")
    assert ran.returncode == 0, ran.stderr
    # The plan first: each key added or removed, with whose it is; the credential to rotate.
    assert f"+ age:{deploy} (pipeline:deploy)" in ran.stdout
    assert f"+ age:{ops} (team:ops)" in ran.stdout
    assert f"- age:{estate['carol']} (user:carol)" in ran.stdout
    assert "rotate the credential of `spare`: a key removed from it could read it" in ran.stdout
    assert SENTINEL not in ran.stdout + ran.stderr
    assert not (repo / ".connc").exists()  # its staging directory, gone with the work
    assert recipients_of(repo, "connections.d/db.sops.yaml") == {f"age:{TEST_RECIPIENT}",
                                                                 f"age:{deploy}"}
    assert recipients_of(repo, "connections.d/registry.sops.yaml") == {
        f"age:{TEST_RECIPIENT}", f"age:{deploy}", f"age:{ops}"}
    assert recipients_of(repo, "connections.d/shared.sops.yaml") == {f"age:{TEST_RECIPIENT}",
                                                                     f"age:{ops}"}
    assert recipients_of(repo, "connections.d/spare.sops.yaml") == {f"age:{TEST_RECIPIENT}"}
    strict = connc("validate", "--strict", "--repo", str(repo), key=None, cwd=REPO_ROOT)
    assert strict.returncode == 0, strict.stdout
    # A later `sops updatekeys` by hand agrees: nothing to change, the file stays as it is.
    before = files(repo)
    for relpath in [p for p in before if p.startswith("connections.d/")]:
        done = subprocess.run([binary.executable(), "updatekeys", "--yes", relpath], cwd=repo,
                              env=sops_env(TEST_KEY_FILE), capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0 and "already up to date" in done.stderr
    assert files(repo) == before
    # Each runner renders with its own key.
    for pipeline_id, key in (("deploy", deploy_key), ("build", ops_key)):
        rendered = connc("render", pipeline_id, "--repo", str(repo), "--out",
                         str(repo.parent / f"bundle-{pipeline_id}"), key=key, cwd=REPO_ROOT)
        assert rendered.returncode == 0, rendered.stderr
    # And a second sync has nothing to do.
    again = keys_sync(repo, "--all")
    assert again.returncode == 0 and "nothing to change" in again.stdout
    assert files(repo) == before


def test_a_dry_run_changes_nothing(repo: Path) -> None:
    before = files(repo)
    ran = keys_sync(repo, "--all", "--dry-run")
    assert ran.returncode == 0, ran.stderr
    assert "dry run: nothing was changed" in ran.stdout and "+ age:" in ran.stdout
    assert files(repo) == before
    assert not list(repo.glob(".connc/keys-sync-*"))


def test_one_connection_is_synced_and_the_others_keep_their_keys(repo: Path) -> None:
    before = files(repo)
    ran = keys_sync(repo, "db")
    assert ran.returncode == 0, ran.stderr
    after = files(repo)
    changed = {p for p in after if after[p] != before.get(p)}
    assert changed == {"connections.d/db.sops.yaml", ".sops.yaml"}
    findings = json.loads(connc("validate", "--repo", str(repo), "--format",
                                "json", key=None, cwd=REPO_ROOT).stdout)["findings"]
    assert not [f for f in findings if f["path"] == "connections.d/db.sops.yaml"
                or "`db`" in f["message"]]
    assert [f for f in findings if f["path"] == "connections.d/spare.sops.yaml"]  # not synced


def test_sync_never_adds_a_key_the_scope_does_not_allow(repo: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         estate: dict[str, Any]) -> None:
    # A derivation bug that would hand carol's key to alice's private connection.
    needed = Keyring.needed
    carol = f"age:{estate['carol']}"
    monkeypatch.setattr(Keyring, "needed", lambda self, c: needed(self, c) | {carol})
    before = files(repo)
    with pytest.raises(AssertionError, match="would add"):
        sync.run(repo, ("db",), False, False, lambda _line: None, 600)
    assert files(repo) == before


def test_without_a_key_nothing_changes_and_it_says_so(repo: Path, tmp_path: Path) -> None:
    other, _public = new_age_key(tmp_path)
    before = files(repo)
    for key in (None, other):
        ran = keys_sync(repo, "--all", key=key)
        assert ran.returncode == 2, ran.stdout + ran.stderr
        assert "Traceback" not in ran.stderr and SENTINEL not in ran.stdout + ran.stderr
        assert files(repo) == before


def test_a_pipeline_file_that_cannot_be_read_stops_the_sync(repo: Path) -> None:
    # Its runner key would otherwise be dropped from every file it uses.
    (repo / "pipelines.d" / "deploy.yaml").write_text("metadata: [\n")
    before = files(repo)
    ran = keys_sync(repo, "--all")
    assert ran.returncode == 1 and "pipelines.d/deploy.yaml" in ran.stderr
    assert "nothing was changed" in ran.stderr
    assert files(repo) == before


def test_staging_never_goes_through_a_symlink(repo: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (repo / ".connc").symlink_to(elsewhere)
    before = files(repo)
    ran = keys_sync(repo, "--all")
    assert ran.returncode == 2 and ".connc" in ran.stderr
    assert files(repo) == before and list(elsewhere.iterdir()) == []


def test_one_sync_at_a_time(repo: Path) -> None:
    fd = os.open(repo, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        ran = keys_sync(repo, "--all")
    finally:
        os.close(fd)
    assert ran.returncode == 2 and "another `connc keys sync` is running" in ran.stderr


# ---------------------------------------------------------------------------- interrupts

EXPECTED = {"db": {"admin", "deploy"}, "registry": {"admin", "deploy", "ops"},
            "shared": {"admin", "ops"}, "spare": {"admin"}}


def _expected(estate: dict[str, Any]) -> dict[str, set[str]]:
    names = {"admin": f"age:{TEST_RECIPIENT}", "deploy": f"age:{estate['deploy'][1]}",
             "ops": f"age:{estate['ops'][1]}"}
    return {cid: {names[n] for n in holders} for cid, holders in EXPECTED.items()}


def _before_or_after(repo: Path, before: dict[str, bytes], estate: dict[str, Any]) -> int:
    """Each file is as it was, or as the sync makes it (and opens): never half. Returns how
    many connection files were already done."""
    done = 0
    for cid, keys in _expected(estate).items():
        relpath = f"connections.d/{cid}.sops.yaml"
        if (repo / relpath).read_bytes() == before[relpath]:
            continue
        assert recipients_of(repo, relpath) == keys, relpath
        opened = subprocess.run([binary.executable(), "decrypt", relpath], cwd=repo,
                                env=sops_env(TEST_KEY_FILE), capture_output=True, check=False)
        assert opened.returncode == 0, relpath
        done += 1
    assert (repo / ".sops.yaml").read_bytes() in (before[".sops.yaml"],
                                                  _synced_rules(repo, estate))
    return done


_RULES: dict[str, bytes] = {}


def _synced_rules(repo: Path, estate: dict[str, Any]) -> bytes:
    """The .sops.yaml a completed sync writes (computed once, on a copy)."""
    if "rules" not in _RULES:
        copy = repo.parent / "reference"
        shutil.copytree(estate["repo"], copy)
        assert keys_sync(copy, "--all").returncode == 0
        _RULES["rules"] = (copy / ".sops.yaml").read_bytes()
    return _RULES["rules"]


def _interrupted(repo: Path, signum: int, when: str) -> subprocess.Popen[str]:
    proc = popen("keys", "sync", "--all", "--repo", repo, cwd=REPO_ROOT,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                 start_new_session=True)
    rules = (repo / ".sops.yaml").read_bytes()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        staged = [p for s in repo.glob(".connc/keys-sync-*") for p in s.glob("connections.d/*")]
        if when == "staging" and len(staged) >= 2:
            break
        if when == "renaming" and (repo / ".sops.yaml").read_bytes() != rules:
            break
        time.sleep(0.002)
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signum)  # Ctrl-C: the whole foreground group
    else:
        os.kill(proc.pid, signum)
    proc.wait(timeout=60)
    return proc


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL],
                         ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("when", ["staging", "renaming"])
def test_an_interrupted_sync_leaves_each_file_before_or_after(
        repo: Path, estate: dict[str, Any], signum: int, when: str) -> None:
    before = files(repo)
    proc = _interrupted(repo, signum, when)
    stderr = proc.stderr.read() if proc.stderr else ""
    if signum != signal.SIGKILL:
        # 130; or 0, or death by the signal, when the sync had finished before it came (at
        # the interpreter's exit, Python no longer turns it into an exception).
        assert proc.returncode in (130, 0, -signum), stderr
        assert "Traceback" not in stderr
        assert not list(repo.glob(".connc/keys-sync-*"))  # its own staging removed
    done = _before_or_after(repo, before, estate)
    if when == "staging" and proc.returncode in (130, -signal.SIGKILL):
        assert done == 0  # nothing is moved into place before every file is staged
    # Running it again finishes the job, and removes what a SIGKILL left behind.
    again = keys_sync(repo, "--all")
    assert again.returncode == 0, again.stderr
    assert not list(repo.glob(".connc/keys-sync-*"))
    assert connc("validate", "--strict", "--repo", str(repo), key=None,
                 cwd=REPO_ROOT).returncode == 0
    _before_or_after(repo, before, estate)


def test_no_secret_on_any_path_and_nothing_changed_on_a_failure(repo: Path) -> None:
    forms = [SENTINEL, base64.b64encode(SENTINEL.encode()).decode()[:16]]
    outputs = [keys_sync(repo, "--all", "--dry-run")]
    # A credential value edited outside sops: the sync stops at that file, before writing.
    path = repo / "connections.d" / "db.sops.yaml"
    text = path.read_text()
    start = text.index("token: ENC[AES256_GCM,data:") + len("token: ENC[AES256_GCM,data:")
    path.write_text(text[:start] + ("A" if text[start] != "A" else "B") + text[start + 1:])
    before = files(repo)
    failed = keys_sync(repo, "--all")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "connections.d/db.sops.yaml" in failed.stderr and "Traceback" not in failed.stderr
    assert files(repo) == before
    outputs.append(failed)
    for ran in outputs:
        assert not any(form in ran.stdout + ran.stderr for form in forms)


def test_decrypting_never_reads_the_creation_rules(repo: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # With one rule per set of keys, .sops.yaml grows with the estate (1.3 MB at 10,000
    # connections); decrypting needs none of it, so the sops processes of render, check and
    # seal do not read it: here, one sops could not even parse.
    (repo / ".sops.yaml").write_text("creation_rules: [\n")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(TEST_KEY_FILE))
    document = binary.decrypt(repo, "connections.d/db.sops.yaml", deadline=Deadline(60))
    assert document["credential"]["token"].reveal() == SENTINEL
