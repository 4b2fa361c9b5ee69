"""The keys sops finds here, and why none of them opens a file.

sops says "no key could decrypt" (exit 128) alike for a key file that does not exist, a file
that holds no age identity, a public key where the identity belongs, and a good key that is
simply not one of the file's recipients. This module tells them apart without running sops:
it reads the variables and files sops reads (getsops/sops age/keysource.go, loadIdentities),
parses each identity with pyrage, and compares its public half with the recipients in the
file's `sops` block. Messages name where a key is and its public key, never the key itself
nor a line of a file that is not one.

connc also has a default key file, `$XDG_CONFIG_HOME/connc/age.txt` (`~/.config/connc/age.txt`),
where `connc init --new-key` suggests putting the key: when no age key variable is set and
that file exists, every sops that connc runs gets it as SOPS_AGE_KEY_FILE, so the key that
init wrote is found with nothing exported.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from connc.errors import SopsError, UsageError
from connc.secrets import AGE_IDENTITY_PREFIX
from connc.sops.metadata import read_metadata
from connc.sops.recipients import NO_KEY_GROUPS, KeyGroups, recipient_id, shown_recipient

KEY_FILE_VARIABLE = "SOPS_AGE_KEY_FILE"
# The variables through which a user chooses sops' age keys; when one is set, connc adds none.
_AGE_VARIABLES = ("SOPS_AGE_KEY", KEY_FILE_VARIABLE, "SOPS_AGE_KEY_CMD")
_SHOWN_RECIPIENTS = 6
# A key file is a few lines; anything much larger is not one, and is not read whole.
_MAX_KEY_FILE = 64 * 1024


class KeyUnusable(UsageError):
    """The environment's keys are unusable for every file alike (no key at all, a missing
    file, no identity in it): said once, exit 2, whatever the command was decrypting."""


class NotARecipient(SopsError):
    """This file's recipients include none of the keys here (exit 2: the environment's)."""

    def __init__(self, message: str, *, path: str, keys: str,
                 recipients: tuple[str, ...]) -> None:
        super().__init__(message, path=path, no_key=True)
        self.keys, self.recipients = keys, recipients


def _config_home(env: Mapping[str, str]) -> Path:
    configured = env.get("XDG_CONFIG_HOME", "")
    return Path(configured) if os.path.isabs(configured) else Path.home() / ".config"


def default_key_file(env: Mapping[str, str] | None = None) -> Path:
    """connc's default key file: where `connc init --new-key` suggests writing the key."""
    return _config_home(os.environ if env is None else env) / "connc" / "age.txt"


def _sops_default_key_file(env: Mapping[str, str]) -> Path:
    """sops' own default (os.UserConfigDir, with XDG_CONFIG_HOME first on macOS too)."""
    configured = env.get("XDG_CONFIG_HOME", "")
    if sys.platform == "darwin" and not os.path.isabs(configured):
        return Path.home() / "Library" / "Application Support" / "sops" / "age" / "keys.txt"
    return _config_home(env) / "sops" / "age" / "keys.txt"


def add_default_key(env: MutableMapping[str, str]) -> None:
    """Give sops connc's default key file, when the user chose no age key and it exists."""
    if not any(name in env for name in _AGE_VARIABLES):
        path = default_key_file(env)
        if path.is_file():
            env[KEY_FILE_VARIABLE] = str(path)


# ---------------------------------------------------------------------------- the sources


@dataclasses.dataclass(frozen=True)
class Source:
    """One place sops takes age identities from."""

    where: str  # as a message names it: "SOPS_AGE_KEY_FILE=/home/a/age.txt"
    recipients: tuple[str, ...] = ()  # the public keys of its identities
    problem: str | None = None  # why sops gets no identity from it
    opaque: bool = False  # holds keys whose public half connc cannot tell (a command, plugins)


def sources(env: Mapping[str, str]) -> list[Source]:
    """Every place sops would take a key from in `env`, in sops' order."""
    found = []
    if "SOPS_AGE_KEY" in env:
        found.append(_parsed("SOPS_AGE_KEY", env["SOPS_AGE_KEY"]))
    if KEY_FILE_VARIABLE in env:
        found.append(_file(f"{KEY_FILE_VARIABLE}={env[KEY_FILE_VARIABLE]}",
                           Path(env[KEY_FILE_VARIABLE]), required=True))
    if "SOPS_AGE_KEY_CMD" in env:
        found.append(Source("the keys SOPS_AGE_KEY_CMD prints", opaque=True))
    sops_default = _sops_default_key_file(env)
    if sops_default.is_file():
        found.append(_file(f"sops' default key file {sops_default}", sops_default,
                           required=False))
    ssh = env.get("SOPS_AGE_SSH_PRIVATE_KEY_FILE")
    for path in [Path(ssh)] if ssh else [Path.home() / ".ssh" / n for n in ("id_ed25519",
                                                                             "id_rsa")]:
        if path.is_file():
            found.append(_ssh(path))
    return found


def _file(where: str, path: Path, *, required: bool) -> Source:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_KEY_FILE + 1)
    except FileNotFoundError:
        return Source(where, problem="no such file" if required else None)
    except IsADirectoryError:
        return Source(where, problem="a directory, not a key file")
    except OSError as exc:
        return Source(where, problem=f"cannot be read ({exc.strerror})")
    if len(raw) > _MAX_KEY_FILE:
        return Source(where, problem="far too large for an age key file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Source(where, problem="not an age key file (not text)")
    finally:
        del raw
    return _parsed(where, text)


def _parsed(where: str, text: str) -> Source:
    """The identities of a key text as sops parses it: one a line, `#` comments; a line that
    is not an identity makes sops drop the whole source."""
    import pyrage  # type: ignore[import-untyped]  # only when a decryption failed

    recipients: list[str] = []
    opaque = False
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        upper = line.upper()
        if upper.startswith(AGE_IDENTITY_PREFIX):
            try:
                recipients.append(str(pyrage.x25519.Identity.from_str(line).to_public()))
            except Exception:  # noqa: BLE001 - pyrage's errors say nothing we would show
                return Source(where, problem=f"line {number} looks like an age identity but "
                                             f"does not parse (cut short or mistyped?)")
        elif upper.startswith(("AGE-PLUGIN-", "AGE-SECRET-KEY-PQ-")):
            opaque = True
        elif line.startswith("age1") and " " not in line:
            shown = shown_recipient(line[:90])  # printable: a file may hold escapes
            return Source(where, problem=f"holds the public key {shown} where sops needs "
                                         f"the identity (the {AGE_IDENTITY_PREFIX}... line of the "
                                         f"key file, not its `# public key:` line)")
        else:
            # Never quoted: it may be any secret pasted into the wrong file.
            return Source(where, problem=f"not an age identity (line {number} is neither an "
                                         f"{AGE_IDENTITY_PREFIX}... line nor a # comment)")
    if not recipients and not opaque:
        return Source(where, problem="holds no age identity")
    return Source(where, tuple(recipients), opaque=opaque)


def _ssh(path: Path) -> Source:
    """An ssh key sops (3.10 and later) uses as an age identity; its public half from the
    `.pub` beside it, when there is one (the private key may be passphrase-protected)."""
    try:
        fields = path.with_name(path.name + ".pub").read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError):
        return Source(f"the ssh key {path}", opaque=True)
    return Source(f"the ssh key {path}", (" ".join(fields[:2]),) if len(fields) >= 2 else (),
                  opaque=len(fields) < 2)


# ---------------------------------------------------------------------------- the verdict


def no_key_error(env: Mapping[str, str], root: Path,
                 relpath: str) -> KeyUnusable | NotARecipient | SopsError:
    """Why sops found no key for `relpath` (exit 128): the environment's fault for every file
    (`KeyUnusable`), this file's recipients include none of the keys here (`NotARecipient`),
    or they do and it still does not open: the file's fault (`SopsError`, exit 1)."""
    found = sources(env)
    broken = [f"{source.where}: {source.problem}" for source in found if source.problem]
    if broken:
        return KeyUnusable("no usable key: " + "; ".join(broken))
    usable = [source for source in found if source.recipients or source.opaque]
    groups = _key_groups(root, relpath)
    recipients = tuple(sorted(_shown(r) for r in frozenset().union(*groups.groups)))
    age_only = all(r.startswith("age1") for r in recipients)
    if not usable and age_only:
        return KeyUnusable(
            f"no usable key: {KEY_FILE_VARIABLE} is not set, and neither connc's default key "
            f"file ({default_key_file(env)}, where `connc init --new-key` suggests it) nor "
            f"sops' ({_sops_default_key_file(env)}) exists; set {KEY_FILE_VARIABLE} to your "
            f"age key file")
    damaged = _damaged(usable, groups, relpath)
    if damaged is not None:
        return damaged
    keys = yours(usable) if usable else "no age key here"
    message = f"{keys} is not among this file's recipients {shown(recipients) or '(none)'}"
    if not age_only:
        message += " (a KMS, PGP or Vault recipient needs that service's credentials here)"
    return NotARecipient(f"no usable key: {message}", path=relpath, keys=keys,
                         recipients=recipients)


def _damaged(usable: list[Source], groups: KeyGroups, relpath: str) -> SopsError | None:
    """The file's fault when keys here are among its recipients, enough of them to open it
    (one per group needed), and sops still found none that decrypts: the data key encrypted
    to them (their stanza in the `sops` block) was changed or damaged."""
    mine = frozenset(recipient_id("age", r) for source in usable for r in source.recipients)
    opened = [group for group in groups.groups if group & mine]
    if not opened or len(opened) < groups.threshold:
        return None
    held = ", ".join(sorted(_shown(r) for r in frozenset().union(*opened) & mine))
    return SopsError(f"your key {held} is one of this file's recipients, but the data key "
                     f"encrypted to it does not decrypt with it: the file's `sops` block was "
                     f"changed or damaged; restore the file from git, or have a key holder "
                     f"write the credential again", path=relpath)


def _shown(recipient: str) -> str:
    return shown_recipient(recipient.partition(":")[2])


def yours(usable: list[Source]) -> str:
    """"your key age1... (SOPS_AGE_KEY_FILE=...)", or each of several."""
    described = [f"{', '.join(source.recipients)}{' and others' if source.opaque else ''} "
                 f"({source.where})" if source.recipients else source.where
                 for source in usable]
    several = len(usable) > 1 or len(usable[0].recipients) != 1 or usable[0].opaque
    return f"your key{'s' if several else ''} {'; '.join(described)}"


def _key_groups(root: Path, relpath: str) -> KeyGroups:
    """Who opens a file, from its `sops` block (recipients in `recipient_id` form)."""
    from connc import documents

    document, _found = documents.read(root, relpath, None)
    data = document.data if document is not None else None
    if not isinstance(data, dict):
        return NO_KEY_GROUPS
    return read_metadata(data.get("sops")).key_groups


def shown(recipients: tuple[str, ...]) -> str:
    more = len(recipients) - _SHOWN_RECIPIENTS
    listed = ", ".join(recipients[:_SHOWN_RECIPIENTS])
    return f"{listed} and {more} more" if more > 0 else listed


def summary(failures: list[NotARecipient]) -> str:
    """Files that no key here opens, said once: whose keys, then each file's recipients on a
    line of its own (never one line per file repeating the keys)."""
    if len(failures) == 1:
        return f"{failures[0].path}: cannot decrypt: {failures[0].message}"
    lines = [f"no usable key: {failures[0].keys} is not among the recipients of "
             f"{len(failures)} files:"]
    lines += [f"  {failure.path}: {shown(failure.recipients) or '(none readable)'}"
              for failure in failures]
    return "\n".join(lines)
