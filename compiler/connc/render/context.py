"""What the writers share: the resolved connections, what they add to the bundle, and the
`Writer` protocol each of them implements (one module per tool family)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from connc.credentials import control_character_problem
from connc.errors import RenderError
from connc.render.bundle import BundleFiles
from connc.secrets import Secret


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
    manifest: dict[str, dict[str, object]] = dataclasses.field(default_factory=dict)

    def path(self, relpath: str) -> str:
        return str(self.out / relpath)

    def mask(self, secret: str, *, username: str | None = None) -> None:
        """Register a secret and the forms it takes in the bundle, for `::add-mask::`."""
        # A workflow command ends at the end of its line: a multi-line secret (a PEM key) is
        # masked line by line, else `::add-mask::` would print its other lines in clear.
        self.masks.update(line.strip() for line in secret.splitlines() if line.strip())
        self.masks.add(quote(secret, safe=""))
        self.masks.add(base64.b64encode(secret.encode()).decode())
        if username is not None:
            self.masks.add(base64.b64encode(f"{username}:{secret}".encode()).decode())

    def record(self, resolved: Resolved, *files: str, **extra: object) -> None:
        entry = self.manifest.setdefault(resolved.id, {
            "id": resolved.id, "type": resolved.type, "files": []})
        entry_files = entry["files"]
        assert isinstance(entry_files, list)
        entry_files.extend(f for f in files if f not in entry_files)
        entry.update(extra)


class Writer(Protocol):
    """A module that writes the bundle files of some connection types (`render/git.py`, ...).

    `write` gets every connection of the pipeline whose type is in `TYPES`, in `uses` order.
    """

    TYPES: frozenset[str]

    def write(self, items: list[Resolved], output: Output) -> None: ...
