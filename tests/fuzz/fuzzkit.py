"""The mutation fuzzer: a small valid repository, mutated, then every command run on it.

A mutation is data (a JSON object: `op` and its parameters), so a failing case is a list of
them that can be kept in `seeds/` and replayed. The operations cover what a pull request can
do to a repository: YAML structure (a line dropped, duplicated, re-indented, a byte or a
character YAML forbids inserted, the text cut short or replaced), field values (wrong types,
huge numbers, control characters, secret-looking values, names that resolve nowhere), the
`sops` blocks (a ciphertext, the MAC or an age stanza damaged, a credential block copied from
another file, recipients changed), `.sops.yaml` (rules and patterns), and the file system
(symlinks inside and out and to /dev/zero, FIFOs, directories where files belong, files over
the size limit, names a case-insensitive file system folds together, `.gitattributes` that
rewrite).

The contract checked on every command (validate keyless and `--decrypt`, access, keys, diff,
render), whatever the mutation:
  - no traceback, no exit 3 (an internal error), no death by a signal;
  - no secret printed: neither the credentials' values (sentinels) nor a secret-looking value
    a mutation planted in plaintext (CONNC403's patterns);
  - bounded time (`COMMAND_SECONDS`);
  - render leaves a whole bundle or nothing: no staging directory, no partial OUT.

Commands run in this process through connc's entry point (`connc.__main__.main`), with a
watchdog timer for hangs, which is a tenth of a subprocess' cost; when the mutated repository
holds something that could take this process down with it (a FIFO, a device), and for a
share of the cases, they run as users run them: a subprocess, itself bounded in time and
memory by `connc.process`.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from connc import process
from kit.build import (
    GIT_IDENTITY,
    REPO_ROOT,
    TEST_KEY_FILE,
    TEST_RECIPIENT,
    connection,
    make_repo,
    pipeline,
    sops_env,
    write,
)
from kit.run import argv as connc_argv
from kit.run import in_process

COMMAND_SECONDS = 20.0  # a command on this small repository takes well under a second
_SUBPROCESS_MEMORY = 2 * 1024 * 1024 * 1024

# The credentials' values: decrypted by render and validate --decrypt, never to be printed.
SENTINELS = {
    "gl": {"token": "glpat-SENTINELgl0token0000000", "username": "sentinel-user-gl"},
    "reg": {"username": "sentinel-user-reg", "password": "SENTINEL-reg-password-5e1"},
    "shared": {"token": "SENTINEL-shared-token-9a3"},
}
# Values that look like secrets (CONNC403's patterns), planted in plaintext by mutations.
SECRET_LOOKING = (
    "ghp_" + "Fz9sEcReTlOoKiNg0123456789abcdef",
    "glpat-" + "FuzzSecretLooking0123456",
    "AKIA" + "FUZZSECRETLOOK12",
    "-----BEGIN PRIVATE KEY-----\nMIIfuzzSECRETlooking==\n-----END PRIVATE KEY-----",
    "AGE-SECRET-" + "KEY-1" + "QFUZZSECRETLOOKING" + "Q" * 40,
)


def _secret_forms() -> list[str]:
    """Each sentinel as it could leak: itself and its base64 (docker's auth field)."""
    forms = []
    for values in SENTINELS.values():
        for value in values.values():
            forms += [value, base64.b64encode(value.encode()).decode()[:20]]
    return forms


def _looking_forms() -> list[str]:
    """The planted values, or a telling part of each (a PEM's body, a key's tail)."""
    return [value.split("\n")[1] if "\n" in value else value for value in SECRET_LOOKING]


# ---------------------------------------------------------------------------- the repository


def build_base(directory: Path) -> Path:
    """The valid repository every case starts from: three connections (one custom-scoped)
    with sentinel credentials, two pipelines, connc.yaml, and its first commit (`base`)."""
    members = {"apiVersion": "connc/v1", "kind": "Members",
               "users": {"alice": {"name": "Alice", "recipients": [TEST_RECIPIENT]},
                         "bob": {}},
               "teams": {"platform": {"members": ["alice", "bob"]}}}
    repo = make_repo(directory, members=members, connections={
        "gl": connection("gl", spec={"url": "https://gitlab.example.com/acme"},
                         credential=SENTINELS["gl"], expiresAt="2099-01-01"),
        "reg": connection("reg", type_="container-registry",
                          spec={"registry": "registry.example.com"},
                          credential=SENTINELS["reg"]),
        "shared": connection("shared", owner="bob", visibility="custom",
                             members=["team:platform"],
                             spec={"url": "https://gitlab.example.com/shared"},
                             credential=SENTINELS["shared"]),
    }, pipelines={"ci": pipeline("ci", "gl", "reg", "shared", teams=["platform"]),
                  "build": pipeline("build", "shared", owner="bob")})
    write(repo, "connc.yaml", {"apiVersion": "connc/v1", "kind": "Config",
                               "admins": ["alice"], "requireSeals": True})
    _git(repo, "init", "-q", "--template=")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    _git(repo, "tag", "base")
    return repo


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT_IDENTITY},
                          capture_output=True, timeout=60, check=False)


FILES = ("connections.d/gl.sops.yaml", "connections.d/reg.sops.yaml",
         "connections.d/shared.sops.yaml", "pipelines.d/ci.yaml", "pipelines.d/build.yaml",
         "members.yaml", "connc.yaml", ".sops.yaml")

# ---------------------------------------------------------------------------- mutations

_PATHS = {
    "connection": [["metadata", "owner"], ["metadata", "id"], ["metadata", "name"],
                   ["metadata", "expiresAt"], ["metadata", "description"],
                   ["scope", "visibility"], ["scope", "members"], ["scope"], ["spec", "type"],
                   ["spec", "url"], ["spec", "registry"], ["spec", "server"], ["spec", "extra"],
                   ["credential"], ["credential", "token"], ["credential", "password"],
                   ["sops"], ["sops", "mac"], ["sops", "age"], ["sops", "lastmodified"],
                   ["sops", "encrypted_regex"], ["sops", "mac_only_encrypted"],
                   ["apiVersion"], ["kind"], ["metadata"], ["bogus"]],
    "pipeline": [["metadata", "owner"], ["metadata", "teams"], ["metadata", "recipients"],
                 ["metadata", "id"], ["uses"], ["uses", 0, "connection"],
                 ["uses", 0, "permissions"], ["uses", 0, "repositories"],
                 ["uses", 0, "refresh"], ["uses", 1], ["kind"]],
    "members": [["users"], ["users", "alice"], ["users", "alice", "recipients"],
                ["users", "alice", "github"], ["users", "carol"], ["teams", "platform"],
                ["teams", "platform", "members"], ["teams", "ops"], ["kind"]],
    "config": [["admins"], ["adminRecipients"], ["requireSeals"], ["expiryWarningDays"],
               ["githubApp"], ["githubApp", "requirePermissions"], ["kind"]],
    "sops": [["creation_rules"], ["creation_rules", 0, "path_regex"],
             ["creation_rules", 0, "age"], ["creation_rules", 0, "encrypted_regex"],
             ["creation_rules", 0, "mac_only_encrypted"], ["creation_rules", 0, "key_groups"],
             ["creation_rules", 0, "shamir_threshold"], ["creation_rules", 1]],
}


def _kind_of(relpath: str) -> str:
    if relpath.startswith("connections.d/"):
        return "connection"
    if relpath.startswith("pipelines.d/"):
        return "pipeline"
    return {"members.yaml": "members", "connc.yaml": "config", ".sops.yaml": "sops"}[relpath]


HUGE_INT = "<an integer of 4,301 digits>"  # what str() of Python's int refuses to print
_WORDS = ["", "alice", "bob", "carol", "team:platform", "team:ops", "pipeline:ci",
          "user:bob", "user:", "gl", "reg", "public", "custom", "private", "gitlab",
          "kubernetes", "container-registry", "connc/v1", "Connection", "Pipeline",
          "https://gitlab.example.com/acme%0a", "http://gitlab.example.com",
          "https://999999999999999999999.example", "ssh://git@host/x",
          "2020-01-01", "2099-12-31", "2027-W05-1", "2027-03-01T00:00:00Z", "1e400",
          "^credential$", "(a+)+$", "^connections\\.d/.*$", "[", TEST_RECIPIENT,
          "age1notakey", "x" * 300, "\u212a8s", "contents", "write", "admin"]

_names = st.sampled_from(_WORDS + list(SECRET_LOOKING))  # what a reference can be
_scalars = st.one_of(
    _names, _names, _names,  # most edits put a name where a name belongs, right or wrong
    st.none(), st.booleans(), st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from([HUGE_INT, 2**63, -1, 0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
)
_values = st.one_of(_scalars, _scalars, st.lists(_names, max_size=3), st.recursive(
    _scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(_WORDS[:12]), inner, max_size=3)), max_leaves=6))
_files = st.sampled_from(FILES)
_fraction = st.floats(min_value=0.0, max_value=1.0)
_SPECIAL = ["\0", "\x07", "\x1b", "\t", "\r", "\u0085", "\u2028", "\u2029", "\ufeff",
            "\x7f", "\\", "'", '"', ":", "- ", "{", "}", "[", "]", "&a", "*a", "!!python/name:x",
            "#", "%YAML 1.1\n---\n", "\n---\n", "? ", "|", ">"]


@st.composite
def _set(draw: st.DrawFn, values: st.SearchStrategy[Any] = _values) -> dict[str, Any]:
    relpath = draw(_files)
    return {"op": "set", "file": relpath,
            "path": draw(st.sampled_from(_PATHS[_kind_of(relpath)])), "value": draw(values)}


def mutations() -> st.SearchStrategy[dict[str, Any]]:
    """One mutation, as data."""
    return st.one_of(
        _set(), _set(),  # field values: the most common change a pull request makes
        # A secret pasted where a name belongs: every message that names a value must not
        # quote it.
        _set(st.one_of(st.sampled_from(SECRET_LOOKING),
                       st.lists(st.sampled_from(SECRET_LOOKING), min_size=1, max_size=2))),
        st.fixed_dictionaries({"op": st.just("insert"), "file": _files, "at": _fraction,
                               "text": st.sampled_from(_SPECIAL)}),
        st.fixed_dictionaries({"op": st.sampled_from(["drop-line", "dup-line", "indent-line"]),
                               "file": _files, "at": _fraction,
                               "by": st.integers(min_value=1, max_value=5)}),
        st.fixed_dictionaries({"op": st.just("truncate"), "file": _files, "at": _fraction}),
        st.fixed_dictionaries({"op": st.just("replace"), "file": _files, "text": st.lists(
            st.sampled_from(list("ab:-[]{}&*!|>'\"#\n \t0.,?%@`") + _SPECIAL),
            max_size=40).map("".join)}),
        st.fixed_dictionaries({"op": st.just("flip"), "file": _files.filter(
            lambda f: f.startswith("connections.d/")), "what": st.sampled_from(
            ["token", "password", "connc-seal", "mac", "enc"]), "at": _fraction}),
        st.fixed_dictionaries({"op": st.just("copy-credential"), "from": _files.filter(
            lambda f: f.startswith("connections.d/")), "to": _files.filter(
            lambda f: f.startswith("connections.d/"))}),
        st.fixed_dictionaries({"op": st.just("fs"), "file": st.one_of(
            _files, st.sampled_from(["connections.d", "pipelines.d",
                                     "connections.d/new.sops.yaml", ".gitattributes",
                                     "connections.d/GL.sops.yaml",
                                     "connections.d/\u212a8s.sops.yaml",
                                     "pipelines.d/notes.txt"])),
                               "to": st.sampled_from(["symlink-inside", "big", "delete",
                                                      "copy-of-gl", "gitattributes"])}),
        # What a file system can hold in a file's place: the oddities that hang or exhaust
        # a reader that opens them, drawn as often as any single kind of edit.
        st.fixed_dictionaries({"op": st.just("fs"), "file": _files,
                               "to": st.sampled_from(["symlink-outside", "symlink-dev-zero",
                                                      "fifo", "directory"])}),
    )


def cases() -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(mutations(), min_size=1, max_size=3)


# ---------------------------------------------------------------------------- applying them


def apply(repo: Path, ops: list[dict[str, Any]]) -> None:
    for op in ops:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            _APPLY[op["op"]](repo, op)


def _text(repo: Path, relpath: str) -> str | None:
    path = repo / relpath
    if path.is_symlink() or not path.is_file():
        return None  # a mutation before made it something else: leave it
    return path.read_text(encoding="utf-8", errors="surrogateescape")


def _put(repo: Path, relpath: str, text: str) -> None:
    (repo / relpath).write_text(text, encoding="utf-8", errors="surrogateescape")


def _set_value(repo: Path, op: dict[str, Any]) -> None:
    text = _text(repo, op["file"])
    if text is None:
        return
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return
    if not isinstance(data, dict):
        return
    node: Any = data
    path = op["path"]
    for step in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(step, {})
        elif isinstance(node, list) and isinstance(step, int) and step < len(node):
            node = node[step]
        else:
            return
    last = path[-1]
    if isinstance(node, dict):
        node[last] = op["value"]
    elif isinstance(node, list) and isinstance(last, int):
        if last < len(node):
            node[last] = op["value"]
        else:
            node.append(op["value"])
    else:
        return
    dumped = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=4096)
    _put(repo, op["file"], dumped.replace(f"'{HUGE_INT}'", "9" * 4301))


def _insert(repo: Path, op: dict[str, Any]) -> None:
    text = _text(repo, op["file"])
    if text is not None:
        at = int(len(text) * op["at"])
        _put(repo, op["file"], text[:at] + op["text"] + text[at:])


def _lines(repo: Path, op: dict[str, Any]) -> None:
    text = _text(repo, op["file"])
    if text is None:
        return
    lines = text.splitlines(keepends=True)
    if not lines:
        return
    n = min(int(len(lines) * op["at"]), len(lines) - 1)
    if op["op"] == "drop-line":
        del lines[n]
    elif op["op"] == "dup-line":
        lines.insert(n, lines[n])
    else:
        lines[n] = " " * op["by"] + lines[n]
    _put(repo, op["file"], "".join(lines))


def _truncate(repo: Path, op: dict[str, Any]) -> None:
    text = _text(repo, op["file"])
    if text is not None:
        _put(repo, op["file"], text[:int(len(text) * op["at"])])


def _replace(repo: Path, op: dict[str, Any]) -> None:
    if _text(repo, op["file"]) is not None:
        _put(repo, op["file"], op["text"])


def _flip(repo: Path, op: dict[str, Any]) -> None:
    """A ciphertext character changed: a value, the seal, the MAC, or the age stanza."""
    text = _text(repo, op["file"])
    if text is None:
        return
    marker = {"enc": "-----BEGIN AGE ENCRYPTED FILE-----\n"}.get(
        op["what"], f"{op['what']}: ENC[AES256_GCM,data:")
    start = text.find(marker)
    if start < 0:
        return
    start += len(marker)
    end = text.find("\n" if op["what"] == "enc" else ",", start + 1)
    end = text.find("\n", end + 1) if op["what"] == "enc" else end
    at = start + int((end - start - 1) * op["at"]) if end > start else start
    if at >= len(text) or text[at] in " \n":
        return
    _put(repo, op["file"], text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1:])


def _copy_credential(repo: Path, op: dict[str, Any]) -> None:
    """The `credential:` block of one file pasted over another's (a copied secret)."""
    source, target = _text(repo, op["from"]), _text(repo, op["to"])
    if source is None or target is None:
        return

    def block(text: str) -> tuple[int, int] | None:
        start = text.find("\ncredential:\n")
        end = text.find("\nsops:\n")
        return (start, end) if 0 <= start < end else None

    taken, replaced = block(source), block(target)
    if taken and replaced:
        _put(repo, op["to"], target[:replaced[0]] + source[taken[0]:taken[1]]
             + target[replaced[1]:])


def _fs(repo: Path, op: dict[str, Any]) -> None:
    path = repo / op["file"]
    to = op["to"]
    if to == "gitattributes":
        _put(repo, ".gitattributes", "*.yaml filter=lfs\nconnections.d/* eol=crlf\n")
        return
    if to == "copy-of-gl":
        if op["file"].endswith(".sops.yaml") and not path.exists():
            shutil.copy(repo / FILES[0], path)
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    if to == "symlink-inside":
        path.symlink_to(os.path.relpath(repo / FILES[3], path.parent))
    elif to == "symlink-outside":
        path.symlink_to(TEST_KEY_FILE)  # a secret outside the repository
    elif to == "symlink-dev-zero":
        path.symlink_to("/dev/zero")
    elif to == "fifo":
        os.mkfifo(path)
    elif to == "directory":
        path.mkdir()
        (path / "inner.yaml").write_text("a: b\n")
    elif to == "big":
        with open(path, "wb") as file:
            file.write(b"a: " + b"b" * (8 * 1024 * 1024 + 1))


_APPLY: dict[str, Callable[[Path, dict[str, Any]], None]] = {
    "set": _set_value, "insert": _insert, "drop-line": _lines, "dup-line": _lines,
    "indent-line": _lines, "truncate": _truncate, "replace": _replace, "flip": _flip,
    "copy-credential": _copy_credential, "fs": _fs,
}


# ---------------------------------------------------------------------------- the contract


@dataclasses.dataclass(frozen=True)
class Failure:
    command: str
    why: str
    output: str  # an excerpt, with every secret replaced by its name

    def __str__(self) -> str:
        return f"`connc {self.command}`: {self.why}\n{self.output}"


@dataclasses.dataclass(frozen=True)
class Contract:
    secret_looking: bool = True  # also refuse a planted secret-looking value in the output
    # Cases run as a subprocess although running them in this process is safe. Those that
    # are not (a FIFO, a device) always do.
    subprocess_share: float = 0.0
    seconds: float = COMMAND_SECONDS  # each command's bound


class _Hung(BaseException):
    """Raised by the watchdog: not an Exception, so connc's own handlers let it through."""


def commands(repo: Path, out: Path) -> dict[str, list[str]]:
    """Each command by name, with its arguments."""
    return {"validate": ["validate", "--repo", str(repo), "--format", "json"],
            "validate --decrypt": ["validate", "--repo", str(repo), "--decrypt",
                                   "--timeout", "20"],
            "access": ["access", "--repo", str(repo), "--format", "json"],
            "keys": ["keys", "--repo", str(repo), "--format", "json"],
            "diff": ["diff", "base", "--repo", str(repo), "--format", "json"],
            # The same change committed: read from git's objects, as in a pull request.
            "diff base HEAD": ["diff", "base", "HEAD", "--repo", str(repo), "--format",
                               "json"],
            "render": ["render", "ci", "--repo", str(repo), "--out", str(out),
                       "--timeout", "20"]}


def check(base: Path, ops: list[dict[str, Any]], workdir: Path,
          contract: Contract = Contract(), *, in_process: bool | None = None,
          codes: dict[str, int | None] | None = None) -> list[Failure]:
    """Apply `ops` to a copy of `base`, run every command on it, and return what broke the
    contract (nothing: an empty list), stopping at the first command that did. `codes`, if
    given, gets each command's exit code (None: it did not finish)."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    repo = Path(shutil.copytree(base, workdir / "repo", symlinks=True))
    apply(repo, ops)
    _git(repo, "add", "-A")  # what git cannot hold (a FIFO) stays out: HEAD is then base
    _git(repo, "commit", "-q", "--allow-empty", "-m", "the change")
    outs = workdir / "bundles"
    outs.mkdir()
    if in_process is None:
        rng = random.Random(json.dumps(ops, sort_keys=True, default=repr))
        in_process = _safe_in_process(repo) and rng.random() >= contract.subprocess_share
    run = _in_process if in_process else _subprocess
    failures = []
    for name, argv in commands(repo, outs / "out").items():
        started = time.monotonic()
        code, output = run(argv, contract.seconds)
        elapsed = time.monotonic() - started
        if codes is not None:
            codes[name] = code
        failures += _judge(name, code, output, elapsed, contract)
        if failures:
            return failures
    return _bundle_left(outs)


def _safe_in_process(repo: Path) -> bool:
    """No FIFO or device, nor a link to one: opened by mistake, it could hang or exhaust the
    process that runs the fuzzer."""
    for directory, names, files in os.walk(repo):
        for name in names + files:
            with contextlib.suppress(OSError):
                mode = os.stat(os.path.join(directory, name)).st_mode
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    return False
    return True


def _judge(command: str, code: int | None, output: str, elapsed: float,
           contract: Contract) -> list[Failure]:
    found = []
    if code is None:
        found.append("did not finish within its time")
    elif code not in (0, 1, 2):
        found.append(f"exit {code}" + (" (an internal error)" if code == 3 else ""))
    if "Traceback" in output or "internal error" in output:
        found.append("a traceback or an internal error")
    if elapsed > contract.seconds:
        found.append(f"took {elapsed:.1f} s")
    if any(form in output for form in _secret_forms()):
        found.append("printed a credential's value")
    if contract.secret_looking and any(form in output for form in _looking_forms()):
        found.append("printed a secret-looking value")
    return [Failure(command, why, _excerpt(output)) for why in found]


def _excerpt(output: str) -> str:
    for form in _secret_forms():
        output = output.replace(form, "<credential value>")
    for form in _looking_forms():
        output = output.replace(form, "<secret-looking value>")
    return output[-3000:]


def _bundle_left(outs: Path) -> list[Failure]:
    """Whole or nothing: OUT with its manifest and every file it lists, and nothing else."""
    left = sorted(p.name for p in outs.iterdir())
    if left not in ([], ["out"]):
        return [Failure("render", f"left {left} beside OUT", "")]
    if left:
        out = outs / "out"
        manifest = out / "manifest.json"
        if not manifest.is_file() or stat.S_IMODE(out.stat().st_mode) != 0o700:
            return [Failure("render", "left a partial bundle", str(sorted(out.rglob("*"))))]
    return []


def _in_process(argv: list[str], seconds: float) -> tuple[int | None, str]:
    """connc's entry point in this process: its exit code and what it printed."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds * 1.5)
    try:
        code, stdout, stderr = in_process(*argv)
    except _Hung as hung:  # with what connc printed before, if the watchdog fired in it
        return None, "\n".join(getattr(hung, "__notes__", ()))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return code, f"{stdout}\n{stderr}"


def _alarm(signum: int, frame: object) -> None:
    raise _Hung


def _subprocess(argv: list[str], seconds: float) -> tuple[int | None, str]:
    """`python -m connc ARGV` as a user runs it, bounded by connc's own process runner."""
    running = process.Process(connc_argv(*argv), cwd=REPO_ROOT,
                              env=sops_env(TEST_KEY_FILE), memory=_SUBPROCESS_MEMORY)
    try:
        done = running.wait(seconds * 1.5)
    except process.Timeout:
        return None, ""
    except process.TooMuchOutput:
        return -1, "printed more than 64 MiB"
    return done.returncode, (done.stdout + b"\n" + done.stderr).decode("utf-8", "replace")


# ---------------------------------------------------------------------------- seeds

SEEDS = Path(__file__).resolve().parent / "seeds"


def load_seeds() -> dict[str, list[dict[str, Any]]]:
    """Each kept case by name: the mutations of a failure once found, or a case worth
    running every time."""
    return {path.stem: _symbols(json.loads(path.read_text(encoding="utf-8"))["mutations"],
                                dict(zip(_SYMBOLS, SECRET_LOOKING, strict=True)))
            for path in sorted(SEEDS.glob("*.json"))}


def save_seed(name: str, ops: list[dict[str, Any]], why: str) -> Path:
    SEEDS.mkdir(exist_ok=True)
    path = SEEDS / f"{name}.json"
    kept = _symbols(ops, dict(zip(SECRET_LOOKING, _SYMBOLS, strict=True)))
    path.write_text(json.dumps({"why": why, "mutations": kept}, indent=2, ensure_ascii=True)
                    + "\n", encoding="utf-8")
    return path


# A planted secret-looking value is kept by name: a file of the repository that holds a
# token's shape would trip secret scanners (GitHub's push protection among them).
_SYMBOLS = tuple(f"<secret-looking {n}>" for n in range(len(SECRET_LOOKING)))


def _symbols(value: Any, table: dict[str, str]) -> Any:
    if isinstance(value, str):
        return table.get(value, value)
    if isinstance(value, list):
        return [_symbols(item, table) for item in value]
    if isinstance(value, dict):
        return {key: _symbols(item, table) for key, item in value.items()}
    return value
