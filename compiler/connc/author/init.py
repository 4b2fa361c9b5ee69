"""`connc init`: an empty directory or git repository becomes a connection repository.

It writes the layout README.md's "Start your own" shows — `.sops.yaml` (the creation rule of
docs/formats.md), `members.yaml` with the owner, `connc.yaml` (`requireSeals: true`, the owner as admin), empty
`connections.d/` and `pipelines.d/`, the two workflows (keyless validation; access review with
`connc approvals` as the gate) and `.gitignore` entries for key files and bundles — and the
result validates with no finding. It never prompts. Nothing is written when any of it would
overwrite a file: a directory that is already a connection repository is refused whole.

`--new-key FILE` writes a fresh age identity (0600, created with O_EXCL, outside the repository)
with pyrage, in this process: age-keygen is often not installed, and the secret half never
passes a pipe or an argument. The key itself is never printed; its public half is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from connc import privatefiles, repository
from connc.author import installed
from connc.errors import UsageError
from connc.findings import printable
from connc.schema.models import GITHUB_LOGIN_PATTERN, NAME_PATTERN
from connc.sops import keys
from connc.sops.recipients import recipient_of_member_key

_TEMPLATES = Path(__file__).parent / "templates"
_WORKFLOWS = (".github/workflows/validate.yml", ".github/workflows/access-review.yml")
_GIVEN = "--connc-requirement"


@dataclasses.dataclass(frozen=True)
class Initialised:
    root: Path
    written: list[str]  # relative paths, in the order written
    recipient: str
    key_file: Path | None
    source: installed.Source  # what the workflows install
    pipeline: str | None = None  # the first pipeline, written with its runner key

    def messages(self) -> list[str]:
        lines = [f"connc: a connection repository in {self.root}: {', '.join(self.written)}"]
        if self.key_file is not None:
            lines.append(f"connc: wrote a new age key to {self.key_file} (0600; keep it out of "
                         f"git): its public key {self.recipient} is the one .sops.yaml encrypts to")
            if self.key_file == keys.default_key_file():
                lines.append("connc: connc finds it there, its default key file, when "
                             f"{keys.KEY_FILE_VARIABLE} is not set")
            else:
                lines.append(f"connc: so that connc and sops find it, in every shell: export "
                             f"{keys.KEY_FILE_VARIABLE}={self.key_file}")
        lines += self._requirement_lines()
        lines += ["next:",
                  "  - connc new TYPE ID            # a connection, encrypted and sealed",
                  "  - connc secret set ID FIELD    # each secret, from stdin or a hidden prompt"]
        if self.pipeline is None:
            lines += ["  - write pipelines.d/ID.yaml, then connc validate",
                      "  - connc render ID              # on a runner: with its key in "
                      f"{keys.KEY_FILE_VARIABLE}"]
        else:
            lines += [f"  - list the connections it uses in pipelines.d/{self.pipeline}.yaml",
                      "  - connc keys sync --all       # encrypts them to its runner key too",
                      f"  - on the runner, with its key: connc render {self.pipeline}"]
        return lines

    def _requirement_lines(self) -> list[str]:
        shown = printable(self.source.requirement)
        if self.source.origin == _GIVEN:
            return [f"connc: the workflows install {shown} (--connc-requirement)"]
        if self.source.problem is None:
            return [f"connc: the workflows install {shown} (from {printable(self.source.origin)}"
                    f", where this connc came from)"]
        workflows = " and ".join(_WORKFLOWS)
        return [f"connc: warning: the workflows install {shown}, a guess: "
                f"{printable(self.source.problem)}.",
                f"  Give what CI should install with --connc-requirement (e.g. 'connc @ "
                f"git+https://HOST/OWNER/connc@COMMIT'), or change CONNC in {workflows}."]


def init(directory: Path, *, owner: str, recipients: Sequence[str], new_key: Path | None,
         github: str | None = None, connc_requirement: str | None = None,
         pipeline: str | None = None, runner_keys: Sequence[str] = ()) -> Initialised:
    """`pipeline` and `runner_keys` (given together): the first pipeline, owned by `owner`,
    whose runner renders with those keys (its `metadata.recipients`)."""
    root = directory.absolute()
    _check_arguments(owner, recipients, new_key, github)
    _check_runner(pipeline, runner_keys)
    if connc_requirement is not None:
        source = installed.Source(connc_requirement, _GIVEN)
    else:
        source = installed.source()
    requirement = source.requirement
    if not installed.REQUIREMENT.fullmatch(requirement):
        raise UsageError(f"--connc-requirement {printable(requirement)!r} is not a pip "
                         f"requirement a workflow can carry")
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root} exists and is not a directory")
    existing = [name for name in (repository.CONNECTIONS_DIR, repository.PIPELINES_DIR,
                                  repository.MEMBERS_FILE, repository.CONFIG_FILE,
                                  repository.SOPS_CONFIG, *_WORKFLOWS)
                if repository.present(root / name)]
    if existing:
        raise UsageError(f"{root} already has {', '.join(existing)}: connc init starts a new "
                         f"connection repository and changes nothing in an existing one")
    _refuse_links(root, [*_WORKFLOWS, ".gitignore"])
    key_file = new_key.expanduser().absolute() if new_key is not None else None
    if key_file is not None:
        if key_file.resolve().is_relative_to(root.resolve()):
            raise UsageError(f"--new-key {key_file} is inside the repository, where it could be "
                             f"committed; put it outside (e.g. ~/.config/connc/age.txt)")
        if repository.present(key_file):
            raise UsageError(f"--new-key {key_file} exists; connc never overwrites a key")
    root.mkdir(parents=True, exist_ok=True)
    recipient = write_key(key_file) if key_file is not None else recipients[0]
    keys = [recipient] if key_file is not None else list(recipients)
    files = {
        repository.SOPS_CONFIG: _sops_config(keys),
        repository.MEMBERS_FILE: _members(owner, keys, github),
        repository.CONFIG_FILE: _config(owner, keys),
        f"{repository.CONNECTIONS_DIR}/.gitkeep": "",
        f"{repository.PIPELINES_DIR}/.gitkeep": "",
        **({repository.pipeline_path(pipeline): _pipeline(pipeline, owner, runner_keys)}
           if pipeline is not None else {}),
        **{workflow: _template(Path(workflow).name).replace(
            "@{connc}", json.dumps(requirement)) for workflow in _WORKFLOWS},
    }
    written = []
    for relpath, text in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as out:  # never over a file that appeared
            out.write(text)
        written.append(relpath)
    written.append(_gitignore(root))
    return Initialised(root, written, recipient, key_file, source, pipeline)


def _refuse_links(root: Path, relpaths: Sequence[str]) -> None:
    """A directory someone prepared (a clone) may hold `.gitignore` or `.github` as a symlink
    to a file or directory of the user's: init writes nothing through one, before it writes
    anything at all."""
    for relpath in relpaths:
        parts = Path(relpath).parts
        for depth in range(1, len(parts) + 1):
            path = root.joinpath(*parts[:depth])
            if path.is_symlink():
                raise UsageError(f"{path} is a symlink: connc init writes nothing through one "
                                 f"(it could point outside {root}); remove it first")


def _check_arguments(owner: str, recipients: Sequence[str], new_key: Path | None,
                     github: str | None) -> None:
    if not re.fullmatch(NAME_PATTERN, owner):
        raise UsageError(f"--owner {printable(owner)!r} is not a user name (letters, digits, "
                         f"'.', '_', '-')")
    if github is not None and not re.fullmatch(GITHUB_LOGIN_PATTERN, github):
        raise UsageError(f"--github {printable(github)!r} is not a GitHub login")
    if (new_key is None) == (not recipients):
        raise UsageError("give --new-key FILE (a fresh age key) or --recipient KEY (keys you "
                         "have), one of the two")
    for key in recipients:
        _check_key("--recipient", key)


def _check_key(option: str, key: str) -> None:
    if key.upper().startswith("AGE-SECRET-KEY-"):
        raise UsageError(f"{option} takes a public key, and this is a secret one: give its "
                         f"public half (the '# public key:' line of the key file)")
    if recipient_of_member_key(key).startswith("unknown:"):
        # Only the start of the value: a pasted secret is not echoed into a CI log.
        raise UsageError(f"{option} {printable(key[:10])!r}... is not a public key sops knows "
                         f"(age1..., a KMS ARN, a PGP fingerprint, ...)")
    if not _is_age_recipient(key):
        raise UsageError(f"{option} {printable(key, 100)!r} is not a valid age public key (its "
                         f"checksum does not match: cut short or mistyped?)")


def _is_age_recipient(key: str) -> bool:
    """False for an `age1...` X25519 key that does not decode: sops would refuse to encrypt
    to it, at the first `connc new`. An X25519 key has one `1` (bech32's separator); more name
    a plugin or post-quantum recipient, which is sops' to check."""
    if not key.startswith("age1") or key.count("1") > 1:
        return True
    import pyrage  # type: ignore[import-untyped]

    try:
        pyrage.x25519.Recipient.from_str(key)
    except Exception:  # noqa: BLE001 - pyrage's errors say only that it does not decode
        return False
    return True


def _check_runner(pipeline: str | None, runner_keys: Sequence[str]) -> None:
    if (pipeline is None) != (not runner_keys):
        raise UsageError("--runner-key and --pipeline go together: the pipeline whose runner "
                         "renders with that key")
    if pipeline is not None:
        repository.check_id(pipeline, "--pipeline")
    for key in runner_keys:
        _check_key("--runner-key", key)


def _pipeline(pipeline: str, owner: str, runner_keys: Sequence[str]) -> str:
    return (
        "# Written by connc init: the first pipeline. Its runner renders with the key whose\n"
        "# public half is in metadata.recipients. List the connections it uses under `uses`,\n"
        "# then run `connc keys sync --all`, which encrypts their files to that key too.\n"
        "apiVersion: connc/v1\nkind: Pipeline\n"
        f"metadata:\n  id: {pipeline}\n  owner: {owner}\n"
        f"  recipients: {json.dumps(list(runner_keys))}\n"
        "uses: []\n")


def write_key(path: Path) -> str:
    """A fresh age identity in `path` (0600, O_EXCL); returns its public key. Also `connc keys
    new`, for the keys of people who join and of runners."""
    import pyrage

    identity = pyrage.x25519.Identity.generate()
    public = str(identity.to_public())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    text = f"# created: {created} by connc\n# public key: {public}\n{identity}\n"
    try:
        privatefiles.create(path, text.encode())
    except FileExistsError:
        raise UsageError(f"{path} exists; connc never overwrites a key") from None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    return public


def _template(name: str) -> str:
    return (_TEMPLATES / name).read_text(encoding="utf-8")


def _sops_config(keys: list[str]) -> str:
    return (
        "# Written by connc init. Connections encrypt only `credential`, and the MAC covers\n"
        "# only what is encrypted, so reviewers can read and change scope, owner and endpoint.\n"
        "# `connc keys sync` adds, ahead of this rule, one rule per set of keys: each\n"
        "# credential is then encrypted to exactly the keys that need it.\n"
        "creation_rules:\n"
        "  - path_regex: ^connections\\.d/.*\\.sops\\.yaml$\n"
        "    encrypted_regex: ^credential$\n"
        "    mac_only_encrypted: true\n"
        f"    age: {','.join(keys)}\n")


def _members(owner: str, keys: list[str], github: str | None) -> str:
    user = {"github": github, "recipients": keys} if github else {"recipients": keys}
    return (
        "# Written by connc init: users (with their GitHub account, whose pull-request reviews\n"
        "# count as their consent) and teams, the principals of scopes and pipelines.\n"
        "apiVersion: connc/v1\nkind: Members\n"
        f"users:\n  {owner}: {json.dumps(user)}\nteams: {{}}\n")


def _config(owner: str, keys: list[str]) -> str:
    return (
        "# Written by connc init: the repository's policy.\n"
        "apiVersion: connc/v1\nkind: Config\n"
        f"admins: [{owner}]            # consent to members, keys and policy changes\n"
        "requireSeals: true          # render refuses a credential no key holder sealed\n"
        f"adminRecipients: {json.dumps(keys)}   # break-glass keys allowed on every file\n")


def _gitignore(root: Path) -> str:
    """Add connc's entries to .gitignore (created, or appended once)."""
    path = root / ".gitignore"
    entries = _template("gitignore")
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    if entries.splitlines()[0] not in current:
        separator = "\n" if current and not current.endswith("\n") else ""
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        with os.fdopen(descriptor, "a", encoding="utf-8") as out:  # never through a link
            out.write(separator + ("\n" if current else "") + entries)
    return ".gitignore"
