"""What the writers share: the resolved connections, and what they add to the bundle."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
from pathlib import Path
from urllib.parse import quote

from connc import models
from connc.content import control_character_problem
from connc.errors import RenderError
from connc.render.bundle import BundleFiles
from connc.secrets import Secret


@dataclasses.dataclass
class Resolved:
    """One connection a pipeline uses, decrypted, with any token minted for it."""

    connection: models.Connection
    use: models.Use
    credential: dict[str, Secret]
    token: Secret | None = None
    token_expires_at: dt.datetime | None = None

    @property
    def id(self) -> str:
        return self.connection.metadata.id

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
        self.masks.add(secret)
        self.masks.add(quote(secret, safe=""))
        self.masks.add(base64.b64encode(secret.encode()).decode())
        if username is not None:
            self.masks.add(base64.b64encode(f"{username}:{secret}".encode()).decode())

    def record(self, resolved: Resolved, *files: str, **extra: object) -> None:
        entry = self.manifest.setdefault(resolved.id, {
            "id": resolved.id, "type": resolved.connection.spec.type, "files": []})
        entry_files = entry["files"]
        assert isinstance(entry_files, list)
        entry_files.extend(f for f in files if f not in entry_files)
        entry.update(extra)
