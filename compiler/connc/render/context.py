"""What the writers share: the resolved connections, what they add to the bundle, and the
`Writer` protocol each of them implements (one module per tool family)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from connc.credentials import control_character_problem
from connc.errors import RenderError
from connc.render.bundle import BundleFiles
from connc.secrets import Secret

if TYPE_CHECKING:  # imported only when a pipeline uses a secretless connection
    from connc.identity.exchange import Exchanged


def encodings(secret: str, username: str | None = None) -> list[str]:
    """The forms a secret takes besides itself, in bundle files and on the wire: URL-encoded,
    base64, and with `username` base64 of `username:secret` (HTTP Basic, docker's `auth`).
    Render masks them all; `connc check --reach` redacts them all from what a service echoes."""
    forms = [quote(secret, safe=""), base64.b64encode(secret.encode()).decode()]
    if username is not None:
        forms.append(base64.b64encode(f"{username}:{secret}".encode()).decode())
    return forms


@dataclasses.dataclass
class Resolved:
    """One connection a pipeline uses, decrypted, with any token minted for it.

    `spec` and `use` are the documents as written (YAML spelling), checked against the
    generated schemas and with their defaults filled in.
    """

    id: str
    spec: dict[str, Any]
    use: dict[str, Any]
    credential: dict[str, Secret]
    token: Secret | None = None
    token_expires_at: dt.datetime | None = None
    exchanged: Exchanged | None = None  # a secretless connection: what its exchange gave

    def exchanged_value(self, field: str) -> str:
        """A value the exchange gave, refused if it could inject anywhere."""
        value = self.exchanged.values.get(field) if self.exchanged else None
        if value is None:
            raise RenderError(f"connection `{self.id}`: its exchange gave no {field}")
        text = value.reveal()
        if not text or control_character_problem(field, text):
            raise RenderError(f"connection `{self.id}`: the {field} its exchange gave is "
                              f"empty or holds a control character; refused")
        return text

    @property
    def type(self) -> str:
        return str(self.spec["type"])

    def secret(self, field: str) -> str | None:
        """The plaintext of a credential field, refused if it could inject anywhere."""
        value = self.credential.get(field)
        if value is None:
            return None
        text = value.reveal()
        problem = control_character_problem(field, text)
        if problem:
            raise RenderError(f"connection `{self.id}`: {problem}; refused")
        return text

    def user_password(self) -> tuple[str, str]:
        username, password = self.required("username", "password")
        return username, password

    def required(self, *fields: str) -> list[str]:
        values = [self.secret(field) for field in fields]
        missing = [f for f, v in zip(fields, values, strict=True) if not v]
        if missing:
            raise RenderError(f"connection `{self.id}`: credential needs "
                              f"{' and '.join(f'`{m}`' for m in missing)}")
        return [v for v in values if v]


@dataclasses.dataclass
class Output:
    """Everything the writers produce; the bundle and the env file are made from it."""

    out: Path  # the final bundle path (files are written elsewhere first, then renamed)
    pipeline: str
    files: BundleFiles = dataclasses.field(default_factory=BundleFiles)
    env: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> path-only value
    masks: set[str] = dataclasses.field(default_factory=set)
    unmasked: list[str] = dataclasses.field(default_factory=list)  # where, never the value
    manifest: dict[str, dict[str, object]] = dataclasses.field(default_factory=dict)

    def path(self, relpath: str) -> str:
        return str(self.out / relpath)

    # The runner masks a registered string wherever it appears in the log, so a very short one
    # (a one-character password: `::add-mask::a`) would hide every `a` and still reveal the
    # secret by where the stars fall; GitHub itself masks nothing under 4 characters well.
    MIN_MASK_LENGTH = 4
    # PEM armor lines are the same in every key of a kind: no secret, and masking them would
    # star out every certificate a job prints.
    _ARMOR = re.compile(r"-----(?:BEGIN|END) [A-Z0-9 ]+-----")

    @classmethod
    def maskable(cls, form: str) -> bool:
        """Whether `::add-mask::` may register `form`: long enough, and no common token."""
        stripped = form.strip()  # the runner refuses a blank mask; spaces alone mask nothing
        return len(stripped) >= cls.MIN_MASK_LENGTH and not cls._ARMOR.fullmatch(stripped)

    def mask(self, secret: str, *, where: str, username: str | None = None) -> None:
        """Register a secret and the forms it takes in the bundle, for `::add-mask::`.

        A form too short to mask (`maskable`) is not registered; when that leaves a secret
        with no masked line, it is noted in `unmasked` (`where`: the connection's id, never the
        value) so that `--format github` warns about it.
        """
        if not secret:
            return  # nothing to hide, and `::add-mask::` of "" is a runner warning
        # A workflow command ends at the end of its line, and the runner masks each log line
        # on its own: a multi-line secret (a PEM key) is masked line by line.
        lines = [line.strip() for line in secret.splitlines()]
        forms = [*lines, *encodings(secret, username)]
        self.masks.update(form for form in forms if self.maskable(form))
        if not any(self.maskable(line) for line in lines):
            self.unmasked.append(f"a secret of connection `{where}`")

    def record(self, resolved: Resolved, *files: str, **extra: object) -> None:
        entry = self.manifest.setdefault(resolved.id, {
            "id": resolved.id, "type": resolved.type, "files": []})
        entry_files = entry["files"]
        assert isinstance(entry_files, list)
        entry_files.extend(f for f in files if f not in entry_files)
        entry.update(extra)


class Writer(Protocol):
    """A module that writes the bundle files of some connection types (`render/git.py`, ...).

    `write` gets every connection of the pipeline whose type names it as its writer
    (`schema.connection_types`), in `uses` order.
    """

    def write(self, items: list[Resolved], output: Output) -> None: ...
