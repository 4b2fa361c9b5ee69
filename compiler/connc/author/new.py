"""`connc new`: a connection file from its type's template, encrypted with sops.

The templates are data: field names, order, defaults and the help above each field come
from the models (their field docstrings, which docs/formats.md shows too), and the values
for the fields only the user knows from the type's entry in `schema.connection_types`.
Placeholders are valid values, so the new file validates at once; each one is marked
REPLACE-ME in the comment above it.

Comments sit above keys, never beside them and never inside `credential`: sops moves a
line-end comment above its key, and encrypts every comment inside the encrypted subtree.

The plaintext file exists only between its write and `sops encrypt --in-place`; on any
failure it is removed, so not even placeholder secrets are left in the repository. The
result is then validated like the rest of the repository; a file that would fail is
removed too, so `connc new` leaves a valid connection or nothing.
"""

from __future__ import annotations

import dataclasses
import io
import json
import textwrap
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from connc import privatefiles, process, repository, seal
from connc.credentials import SECRET_PLACEHOLDER
from connc.documents import API_VERSION
from connc.encryption import load_rules
from connc.errors import ConncError, ExitCode, Refused, UsageError
from connc.findings import Finding, Severity, printable, suggest
from connc.schema import connection_types, models
from connc.schema.connection_types import KUBERNETES_OIDC_PLACEHOLDERS, PLACEHOLDER
from connc.schema.policy import secretless
from connc.sops import binary
from connc.validate.files import read_model

VISIBILITIES = ("private", "public", "custom")
ENCRYPT_TIMEOUT = 120.0  # seconds for sops to encrypt the new file (a KMS recipient answers)
_WIDTH = 88  # a comment line's text, at most
# Names people reach for that are not connc's types: the type to use, and what to set in it.
ALIASES: dict[str, tuple[str, str]] = {
    "npm": ("packages", " with `format: npm` in its spec"),
    "maven": ("packages", " with `format: maven` in its spec"),
    "pypi": ("packages", " with `format: pypi` in its spec"),
    "pip": ("packages", " with `format: pypi` in its spec"),
    "k8s": ("kubernetes", ""),
    "kube": ("kubernetes", ""),
    "docker": ("container-registry", ""),
    "registry": ("container-registry", ""),
    "oci": ("container-registry", ""),
    "github": ("github-app", ""),
    "ssh": ("git", " with an ssh:// url"),
}


# ---------------------------------------------------------------------------- the document


def credential_fields(connection_type: str, auth: str | None = None) -> list[str]:
    """The template's credential: the type's first alternative (token over client certs...);
    nothing for a secretless connection."""
    if auth == "oidc":
        return []
    model = models.CREDENTIALS[connection_type]
    first = model.alternatives[0]
    return [key for key in _docs(model) if key in first]


def spec_placeholders(connection_type: str, auth: str | None = None) -> Mapping[str, Any]:
    """The spec values written where only the user knows the value (`schema.connection_types`)."""
    if auth == "oidc":  # kubernetes with the job's identity: no secret, its own placeholders
        return KUBERNETES_OIDC_PLACEHOLDERS
    return connection_types.BY_NAME[connection_type].placeholders


def document(connection_type: str, connection_id: str, owner: str, visibility: str,
             members: list[str], auth: str | None = None) -> CommentedMap:
    """The new file; its comments are the models' field docs, as docs/formats.md shows them."""
    written = spec_placeholders(connection_type, auth)
    doc = CommentedMap(apiVersion=API_VERSION, kind="Connection")
    doc.yaml_set_start_comment(_header(connection_type, connection_id, auth))
    metadata_help = _docs(models.ConnectionMetadata)
    doc["metadata"] = _section(
        {"id": connection_id, "name": connection_id, "owner": owner}, metadata_help)
    _comment(doc, "metadata", "\n".join(_optional_lines(["description", "expiresAt"],
                                                         metadata_help)))
    scope = CommentedMap(visibility=visibility)
    if visibility == "custom":
        scope["members"] = CommentedSeq(members)
    doc["scope"] = _section(scope, _docs(models.Scope))
    spec_model = models.spec_models()[connection_type]
    spec_help = _docs(spec_model)
    values, optional = _spec_fields(connection_type, written)
    # The type's own placeholders, and any other value still holding REPLACE-ME, are marked.
    marked = {key: f"{PLACEHOLDER}: {spec_help[key]}" for key in values
              if key in connection_types.BY_NAME[connection_type].placeholders
              or PLACEHOLDER in str(values[key])}
    field_help = {key: text for key, text in spec_help.items() if key != "type"}  # said above
    doc["spec"] = _section({"type": connection_type, **values}, {**field_help, **marked},
                           nested=_nested_models(spec_model))
    _comment(doc, "spec", "\n".join(
        [f"Plaintext settings of a {connection_type} connection.", *_wrap(spec_help["type"])]
        + _optional_lines(optional, spec_help)))
    fields = credential_fields(connection_type, auth)
    doc["credential"] = CommentedMap((field, SECRET_PLACEHOLDER) for field in fields)
    _comment(doc, "credential", "\n".join(_credential_help(connection_type, connection_id,
                                                            fields)))
    return doc


def _credential_help(connection_type: str, connection_id: str, fields: list[str]) -> list[str]:
    """What to set, from the credential model: the fields written, the optional ones, and
    each other alternative with the command that removes the one written."""
    model = models.CREDENTIALS[connection_type]
    if not fields:  # secretless
        return ["The only encrypted part.",
                *_wrap(f"{models.SecretlessCredential.__doc__} A change of it needs "
                       f"`connc seal {connection_id}`.")]
    help_by_key = _docs(model)
    lines = ["The only encrypted part. Each value is a placeholder until you set it:",
             *(f"  connc secret set {connection_id} {field} < FILE" for field in fields)]
    for field in fields:
        lines += _item(f"{field}: {help_by_key[field]}")
    in_alternatives = set().union(*model.alternatives)
    lines += _optional_lines([key for key in help_by_key if key not in in_alternatives],
                             help_by_key)
    for alternative in model.alternatives[1:]:
        chosen = [key for key in help_by_key if key in alternative]
        removal = "; ".join(f"connc secret unset {connection_id} {field}" for field in fields)
        lines += _wrap(f"Or, instead of {_joined(fields)}: {_joined(chosen)}; set "
                       f"{'them' if len(chosen) > 1 else 'it'}, then remove the placeholder"
                       f"{'s' if len(fields) > 1 else ''}: {removal}")
        lines += [line for key in chosen for line in _item(f"{key}: {help_by_key[key]}", 2)]
    return lines


def _joined(keys: list[str]) -> str:
    return " + ".join(f"`{key}`" for key in keys)


def _docs(model: type[BaseModel]) -> dict[str, str]:
    """Each field's doc, by its YAML name: the model's field docstring (the one source of
    docs/formats.md and the JSON Schemas' descriptions)."""
    return {field.alias or name: field.description or "" for name, field in
            model.model_fields.items()}


def _nested_models(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """The fields of `model` that hold a model of their own (`identity`), by YAML name."""
    found = {}
    for name, field in model.model_fields.items():
        for arg in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                found[field.alias or name] = arg
    return found


def _spec_fields(connection_type: str, placeholders: Mapping[str, Any]
                 ) -> tuple[dict[str, Any], list[str]]:
    """(fields written with their default or placeholder, optional fields left out)."""
    written: dict[str, Any] = {}
    optional = []
    for name, field in models.spec_models()[connection_type].model_fields.items():
        key = field.alias or name
        if key == "type":
            continue
        if key in placeholders:
            written[key] = placeholders[key]
        elif field.is_required():
            raise KeyError(f"the {connection_type} template has no placeholder for {key}")
        # A default that switches something off (None, False) is left out, and listed.
        elif field.default is None or field.default is False:
            optional.append(key)
        else:
            written[key] = field.default
    return written, optional


def _section(values: Mapping[str, Any], help_by_key: dict[str, str], indent: int = 2,
             nested: Mapping[str, type[BaseModel]] | None = None) -> CommentedMap:
    """`values` with the help of each key above it; a mapping whose model is in `nested`
    (`identity`) gets its own fields' help, and the optional ones it leaves out listed."""
    section = CommentedMap(values)
    for key, value in values.items():
        lines = _wrap(help_by_key[key]) if key in help_by_key else []
        model = (nested or {}).get(key)
        if model is not None and isinstance(value, Mapping):
            inner = _docs(model)
            section[key] = _section(value, inner, indent + 2)
            lines += _optional_lines([k for k in inner if k not in value], inner)
        if lines:
            _comment(section, key, "\n".join(lines), indent=indent)
    return section


def _comment(mapping: CommentedMap, key: str, text: str, indent: int = 0) -> None:
    mapping.yaml_set_comment_before_after_key(key, before=text, indent=indent)


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, _WIDTH, break_long_words=False, break_on_hyphens=False)


def _item(text: str, indent: int = 0) -> list[str]:
    """`text` wrapped as one item of a list: its further lines indented under its first."""
    return textwrap.wrap(text, _WIDTH, initial_indent=" " * indent,
                         subsequent_indent=" " * (indent + 2), break_long_words=False,
                         break_on_hyphens=False)


def _optional_lines(keys: list[str], help_by_key: dict[str, str]) -> list[str]:
    return [line for key in keys for line in _item(f"Optional `{key}`: {help_by_key[key]}")]


def _header(connection_type: str, connection_id: str, auth: str | None = None) -> str:
    if secretless({"type": connection_type, "auth": auth}):
        return "\n".join([
            f"{connection_id}: a secretless {connection_type} connection, made by `connc new`.",
            "Only `credential` is encrypted (sops), and it holds only the seal: render "
            "exchanges",
            "the CI job's OIDC identity. The rest is plaintext, reviewed in pull requests.",
            f"Replace each value marked {PLACEHOLDER}, run `connc validate`, open a pull "
            f"request.",
        ])
    return "\n".join([
        f"{connection_id}: a {connection_type} connection, made by `connc new`.",
        "Only `credential` is encrypted (sops); the rest is plaintext, reviewed in pull requests.",
        f"Replace each value marked {PLACEHOLDER}, set the secrets (see `credential` below), "
        f"then",
        "run `connc validate` and open a pull request.",
    ])


def sealed(doc: CommentedMap) -> CommentedMap:
    """The document with its seal (docs/render.md, Seals), as every command that writes a credential adds
    it: the scaffold's plaintext, placeholders included, is what the seal approves until a key
    holder changes it and reseals (`connc secret set` and `connc seal` do)."""
    from connc.schema.check import Problem

    try:
        view = seal.view_of_plaintext(json.loads(json.dumps(doc)))
    except Problem:
        return doc  # not a valid connection: validation refuses it next, and nothing is kept
    doc["credential"][seal.SEAL_FIELD] = seal.encode(view)
    return doc


def dump(doc: CommentedMap) -> str:
    yaml = YAML()  # round-trip: keeps the comments
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # never fold a long value
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


# ---------------------------------------------------------------------------- connc new


@dataclasses.dataclass(frozen=True)
class Created:
    relpath: str
    id: str
    type: str
    owner: str
    visibility: str
    credential_fields: list[str]
    placeholders: list[Finding]  # CONNC111: what validate reports until the user changes it
    findings: list[Finding]  # warnings about the new file (errors remove it)
    # Marked REPLACE-ME too, but valid as they are, so validate cannot tell: (field, value).
    unreported: list[tuple[str, Any]] = dataclasses.field(default_factory=list)

    def next_steps(self) -> list[str]:
        """What is left to do, in order: the spec placeholders validate reports (where they
        are), then the secrets (setting one reseals the plaintext as it is then)."""
        lines = [f"created {self.relpath}: a {self.visibility} {self.type} connection owned by "
                 f"{self.owner}, encrypted with sops and sealed",
                 "placeholders left:"]
        lines += [f"  {f.path}:{f.line}: {_field_of(f)} (CONNC111)" for f in self.placeholders]
        lines += [f"  {field}: {value!r} is valid as it is, so nothing reports it: check it"
                  for field, value in self.unreported]
        lines += [f"  credential.{field} (with --decrypt: CONNC607)"
                  for field in self.credential_fields]
        lines.append("next:")
        step = 1
        if self.placeholders:
            lines.append(f"  {step}. replace {', '.join(_field_of(f) for f in self.placeholders)}"
                         f" in {self.relpath} (plaintext: any editor, no key)")
            step += 1
        if self.credential_fields:
            lines.append(f"  {step}. set each secret, from stdin or a hidden prompt (needs a "
                         f"key that decrypts the file):")
            lines += [f"       connc secret set {self.id} {field}"
                      for field in self.credential_fields]
            step += 1
        else:
            lines.append(f"  {step}. trust this connection's identity on the service's side "
                         f"(docs/secretless/): nothing secret to set")
            step += 1
        lines.append(f"  {step}. connc validate, then open a pull request")
        return lines


def _field_of(placeholder: Finding) -> str:
    """`spec.url` from CONNC111's message (`spec.url` still holds the placeholder ...)."""
    return placeholder.message.split("`")[1]


class NotCreated(ConncError):
    """The new file would not validate; it was removed (so its findings name no line of it)."""

    exit_code = ExitCode.FINDINGS

    def __init__(self, relpath: str, findings: list[Finding]) -> None:
        errors = [f"  {f.severity.value} {f.code} {f.message}" for f in findings
                  if f.severity is Severity.ERROR and f.code != "CONNC111"]
        super().__init__("\n".join([f"{relpath} would not validate, so nothing was written:",
                                    *errors]))
        self.findings = findings


def new_connection(root: Path, connection_type: str, connection_id: str, *,
                   owner: str | None = None, visibility: str = "private",
                   members: tuple[str, ...] = (), auth: str | None = None) -> Created:
    _check_arguments(connection_type, connection_id, visibility, members)
    if auth is not None and (connection_type, auth) != ("kubernetes", "oidc"):
        raise UsageError("--auth oidc is for kubernetes (aws-ecr and pypi-publish are "
                         "secretless anyway)")
    relpath = repository.connection_path(connection_id)
    if repository.present(root / relpath):
        raise UsageError(f"connection `{connection_id}` exists already; change it in place, "
                         f"or rotate a secret with `connc secret set {connection_id} FIELD`",
                         path=relpath)
    if not (root / repository.SOPS_CONFIG).is_file():
        # sops looks for .sops.yaml from the working directory up: without the repository's
        # own, it would encrypt under one in a directory above it, to whoever that names.
        raise UsageError(f"the repository has no {repository.SOPS_CONFIG}, whose creation rules "
                         f"say who can decrypt a new connection; `connc init` writes one")
    owner = owner if owner is not None else _default_owner(root)
    text = dump(sealed(document(connection_type, connection_id, owner, visibility,
                                list(members), auth)))
    _check_sops_config(root)
    _write_encrypted(root, relpath, text)
    found = _validate_new(root, relpath)
    placeholders = [f for f in found if f.code == "CONNC111"]
    reported = {_field_of(f) for f in placeholders}
    written = spec_placeholders(connection_type, auth)
    return Created(relpath, connection_id, connection_type, owner, visibility,
                   credential_fields(connection_type, auth), placeholders,
                   [f for f in found if f.code != "CONNC111"],
                   [(f"spec.{key}", value) for key, value in written.items()
                    if f"spec.{key}" not in reported
                    and not any(r.startswith(f"spec.{key}.") for r in reported)])


def _check_arguments(connection_type: str, connection_id: str, visibility: str,
                     members: tuple[str, ...]) -> None:
    if connection_type not in connection_types.BY_NAME:
        alias = ALIASES.get(connection_type.lower())
        hint = (f"; did you mean `{alias[0]}`{alias[1]}?" if alias
                else suggest(connection_type, connection_types.NAMES))
        raise UsageError(f"unknown connection type `{printable(connection_type, 40)}`{hint} "
                         f"The types are {', '.join(connection_types.NAMES)}")
    repository.check_id(connection_id, "connection")
    if visibility not in VISIBILITIES:
        raise UsageError(f"--visibility is one of {', '.join(VISIBILITIES)}")
    if members and visibility != "custom":
        raise UsageError("--member needs --visibility custom (private and public have no "
                         "member list)")


def _default_owner(root: Path) -> str:
    """The only user of members.yaml; with several, the owner must be named."""
    parsed, _judged = read_model(root, repository.MEMBERS_FILE, models.Members)
    users = sorted(parsed.users) if parsed is not None else []
    if len(users) == 1:
        return users[0]
    if not users:
        raise UsageError("pass --owner USER (members.yaml is missing, invalid or has no users; "
                         "`connc validate` says which)")
    shown = ", ".join(users[:5]) + (", ..." if len(users) > 5 else "")
    raise UsageError(f"pass --owner USER: members.yaml has {len(users)} users ({shown})")


def _check_sops_config(root: Path) -> None:
    """sops encrypts the new file to the recipients `.sops.yaml` names as sops reads it: a
    `.sops.yaml` connc refuses (a rule it cannot read, or YAML sops reads otherwise, such as a
    merge key) starts no sops process."""
    _rules, found = load_rules(root, report=False)
    errors = [f for f in found if f.severity is Severity.ERROR]
    if errors:
        first = errors[0]
        raise Refused(f"{first.path}:{first.line}:{first.column}: {first.code} {first.message}"
                      f"; the new file would be encrypted by it, so nothing was written "
                      f"(`connc validate` lists every problem)")


def _write_encrypted(root: Path, relpath: str, text: str) -> None:
    path = root / relpath
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {repository.CONNECTIONS_DIR}/: {exc.strerror}") from None
    # create: never overwrite a file that appeared since the check; 0600 from the first byte.
    try:
        privatefiles.create(path, text.encode())
    except FileExistsError:
        raise UsageError("the connection exists already", path=relpath) from None
    except OSError as exc:
        raise UsageError(f"cannot write the file: {exc.strerror}", path=relpath) from None
    try:
        binary.encrypt_in_place(root, relpath, deadline=process.Deadline(ENCRYPT_TIMEOUT))
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _validate_new(root: Path, relpath: str) -> list[Finding]:
    """The repository's findings about the new file; on an error, the file is removed."""
    from connc.validate.run import validate

    try:
        found = [f for f in validate(root).findings if f.path == relpath]
    except BaseException:
        (root / relpath).unlink(missing_ok=True)
        raise
    # The scaffold's own placeholders are expected now (CONNC111 until the user fills them).
    if any(f.severity is Severity.ERROR and f.code != "CONNC111" for f in found):
        (root / relpath).unlink(missing_ok=True)
        raise NotCreated(relpath, found)
    return found
