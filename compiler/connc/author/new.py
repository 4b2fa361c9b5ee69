"""`connc new`: a connection file from its type's template, encrypted with sops.

The templates are data: field names, order and defaults come from the models, and this
module adds only what a model cannot know — what each field is, where to find its value,
and a placeholder for the fields that have no default. Placeholders are valid values, so
the new file validates at once; each one is marked REPLACE-ME in the comment above it.

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
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from connc import privatefiles, process, repository, seal, sops
from connc.credentials import SECRET_PLACEHOLDER
from connc.documents import API_VERSION
from connc.encryption import load_rules
from connc.errors import ConncError, ExitCode, Refused, UsageError
from connc.findings import Finding, Severity, printable, suggest
from connc.schema import models
from connc.schema.policy import (
    KUBERNETES_OIDC_PLACEHOLDERS,
    PLACEHOLDER,
    SPEC_PLACEHOLDERS,
    secretless,
)
from connc.validate.files import read_model

# A valid string that no service accepts, and that says what to do with it.
REPLACE = PLACEHOLDER
VISIBILITIES = ("private", "public", "custom")
ENCRYPT_TIMEOUT = 120.0  # seconds for sops to encrypt the new file (a KMS recipient answers)
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


@dataclasses.dataclass(frozen=True)
class Template:
    spec: dict[str, str]  # help for every spec field, by its YAML name
    credential: str  # what the credential is and where to get it
    placeholders: dict[str, Any] = dataclasses.field(default_factory=dict)


_GIT_URL_PREFIX = "A path (https://HOST/GROUP) limits it to the repositories under that path."
_IDENTITY = ("where render gets the CI job's OIDC ID token: provider auto (the CI it runs\n"
             "in), github-actions or gitlab-ci (+ tokenVariable, the job's id_tokens: variable);\n"
             "audience {audience}; optional issuer (refuse another). See docs/secretless/.")
_SECRETLESS = ("Nothing to set: a secretless connection stores no secret. Render exchanges the\n"
               "CI job's OIDC identity for {what}; `credential` holds only\n"
               "the seal, which binds the plaintext above (a change needs `connc seal {{id}}`).")

TEMPLATES: dict[str, Template] = {
    "github-app": Template(
        spec={
            "url": f"GitHub's web URL; https://HOST for GitHub Enterprise Server.\n{_GIT_URL_PREFIX}",
            "apiUrl": "The REST API: https://api.github.com, or https://HOST/api/v3 on GHES.",
            "clientId": f"{REPLACE}: the App's client ID (Iv23li...), on the App's General page\n"
                        "(Settings > Developer settings > GitHub Apps > the App). Or use the\n"
                        "numeric `appId` from the same page instead: exactly one of the two.",
            "appId": "the numeric App ID, on the App's General page (instead of clientId)",
            "installationId": f"{REPLACE}: the installation id, the number at the end of the URL\n"
                              "of the installation's settings page (.../settings/installations/ID).",
        },
        placeholders=SPEC_PLACEHOLDERS["github-app"],
        credential="privateKey: the App's private key (PEM), from \"Generate a private key\" on\n"
                   "the App's General page. Pipelines get short-lived installation tokens.",
    ),
    "gitlab": Template(
        spec={"url": f"GitLab's URL.\n{_GIT_URL_PREFIX}"},
        credential="token: a project, group or personal access token with read_repository\n"
                   "(write_repository to push): Settings > Access tokens. Optional `username`\n"
                   "(default oauth2); a deploy token needs its own username.",
    ),
    "gitlab-self-hosted": Template(
        spec={"url": f"{REPLACE}: the URL of your GitLab (API v4 or later).\n{_GIT_URL_PREFIX}"},
        placeholders=SPEC_PLACEHOLDERS["gitlab-self-hosted"],
        credential="token: a project, group or personal access token with read_repository\n"
                   "(write_repository to push): Settings > Access tokens. Optional `username`\n"
                   "(default oauth2); a deploy token needs its own username.",
    ),
    "codeup": Template(
        spec={"url": f"Codeup's URL.\n{_GIT_URL_PREFIX}"},
        credential="username + password: Codeup's HTTPS clone account (Personal settings >\n"
                   "HTTPS clone password), or a personal access token as the password.",
    ),
    "bitbucket": Template(
        spec={"url": f"Bitbucket's URL.\n{_GIT_URL_PREFIX}"},
        credential="token: a repository, project or workspace access token (Repository\n"
                   "settings > Access tokens; git user x-token-auth). Or `username` +\n"
                   "`password` (an app password) instead of `token`.",
    ),
    "git": Template(
        spec={
            "url": f"{REPLACE}: the git host, https://HOST/ or ssh://git@HOST/.\n{_GIT_URL_PREFIX}",
            "knownHosts": "ssh:// only, required there: the host keys to pin, as lines of\n"
                          "~/.ssh/known_hosts (check `ssh-keyscan HOST` against the host's docs)",
        },
        placeholders=SPEC_PLACEHOLDERS["git"],
        credential="username + password: the HTTPS account and its password or token. For an\n"
                   "ssh:// url use `sshPrivateKey` (the private key file) instead of both.",
    ),
    "container-registry": Template(
        spec={"registry": f"{REPLACE}: host[:port] of the registry, as in image names\n"
                          "(registry.example.com/team/app); Docker Hub is https://index.docker.io/v1/"},
        placeholders=SPEC_PLACEHOLDERS["container-registry"],
        credential="username + password: a robot or service account and its password or\n"
                   "access token (Docker Hub: a personal access token).",
    ),
    "kubernetes": Template(
        spec={
            "server": f"{REPLACE}: the API server, as in a kubeconfig's clusters[].cluster.server",
            "certificateAuthorityData": "the cluster CA, base64 PEM as in a kubeconfig's\n"
                                        "certificate-authority-data (default: the system trust)",
            "namespace": "the context's default namespace",
            "insecureSkipTlsVerify": "true skips verifying the server (a warning; never in "
                                     "production)",
            "auth": "oidc: no stored credential; the CI job's ID token is the bearer\n"
                    "(`connc new kubernetes ID --auth oidc` writes it with identity and refresh)",
            "identity": "with auth: oidc: " + _IDENTITY.format(
                audience="the API server's OIDC client id (--oidc-client-id)"),
            "refresh": "with auth: oidc: exec (kubectl runs `connc id-token`, GitHub) or\n"
                       "static (the token render got; GitLab)",
        },
        placeholders=SPEC_PLACEHOLDERS["kubernetes"],
        credential="token: a service account token (`kubectl create token SA --duration=...`\n"
                   "or a token Secret). Or a client certificate: `clientCertificateData` +\n"
                   "`clientKeyData`, base64 PEM as in a kubeconfig; set both, then remove\n"
                   "`token`: connc secret unset {id} token",
    ),
    "packages": Template(
        spec={
            "format": f"{REPLACE}: maven, npm or pypi",
            "url": f"{REPLACE}: the repository URL (a Maven repository, an npm registry or a\n"
                   "PyPI index ending in /simple/)",
            "repositoryId": f"{REPLACE}: maven only (remove it for npm and pypi): the <server>\n"
                            "id, as the <repository> id in your pom.xml",
            "npmScopes": "npm only: the scopes this registry serves, [@acme]; without it,\n"
                         "it is the default registry for every package",
        },
        placeholders=SPEC_PLACEHOLDERS["packages"],
        credential="username + password: the repository account and its password or token.\n"
                   "npm: `token` (an auth token) instead of both.",
    ),
}

TEMPLATES["aws-ecr"] = Template(
    spec={
        "roleArn": f"{REPLACE}: the IAM role to assume, arn:aws:iam::ACCOUNT:role/NAME; its trust\n"
                   "policy allows this repository's OIDC subject (docs/secretless/aws-ecr.md)",
        "region": f"{REPLACE}: the registry's region",
        "registryIds": "the accounts whose registries the token is for (default: the role's)",
        "sessionDurationSeconds": "the STS session's life, used once (900 to 43200)",
        "roleSessionName": "the session name CloudTrail shows (default connc-ID)",
        "registry": "the docker auths key (default ACCOUNT.dkr.ecr.REGION.amazonaws.com)",
        "stsEndpoint": "STS's URL (default https://sts.REGION.amazonaws.com)",
        "ecrEndpoint": "ECR's API URL (default https://api.ecr.REGION.amazonaws.com)",
        "identity": f"{REPLACE}: " + _IDENTITY.format(audience="sts.amazonaws.com (AWS's)"),
    },
    placeholders=SPEC_PLACEHOLDERS["aws-ecr"],
    credential=_SECRETLESS.format(what="a 12-hour ECR registry token"),
)
TEMPLATES["pypi-publish"] = Template(
    spec={
        "url": "The upload URL: PyPI's, or https://test.pypi.org/legacy/ for TestPyPI.",
        "repositoryName": "a second pypirc section name: pypi makes `twine upload` need no -r",
        "identity": f"{REPLACE}: " + _IDENTITY.format(
            audience="auto (the index says: PyPI's is pypi)"),
    },
    placeholders=SPEC_PLACEHOLDERS["pypi-publish"],
    credential=_SECRETLESS.format(what="a 15-minute PyPI upload token"),
)
_KUBERNETES_OIDC_CREDENTIAL = _SECRETLESS.format(what="its ID token, sent as the bearer")

_METADATA_HELP = {
    "name": "A display name.",
    "owner": "The user (in members.yaml) who owns the connection and answers for it.",
    "description": "what the connection is for",
    "expiresAt": "YYYY-MM-DD when the credential expires; validate warns 30 days before",
}


# ---------------------------------------------------------------------------- the document


def credential_fields(connection_type: str, auth: str | None = None) -> list[str]:
    """The template's credential: the type's first alternative (token over client certs...);
    nothing for a secretless connection."""
    if auth == "oidc":
        return []
    model = models.CREDENTIALS[connection_type]
    first = model.alternatives[0]
    return [key for name, field in model.model_fields.items()
            if (key := field.alias or name) in first]


def document(connection_type: str, connection_id: str, owner: str, visibility: str,
             members: list[str], auth: str | None = None) -> CommentedMap:
    template = TEMPLATES[connection_type]
    if auth == "oidc":  # kubernetes with the job's identity: its own placeholders, no secret
        template = dataclasses.replace(template, placeholders=KUBERNETES_OIDC_PLACEHOLDERS,
                                       credential=_KUBERNETES_OIDC_CREDENTIAL)
    doc = CommentedMap(apiVersion=API_VERSION, kind="Connection")
    doc.yaml_set_start_comment(_header(connection_type, connection_id, auth))
    doc["metadata"] = _section(
        {"id": connection_id, "name": connection_id, "owner": owner}, _METADATA_HELP)
    _comment(doc, "metadata", "\n".join(_optional_lines(["description", "expiresAt"],
                                                         _METADATA_HELP)))
    scope = CommentedMap(visibility=visibility)
    if visibility == "custom":
        scope["members"] = CommentedSeq(members)
    doc["scope"] = scope
    _comment(doc, "scope", "Who may use it: private, the owner's pipelines; public, every "
                           "pipeline;\ncustom, the owner's and those of `members` "
                           "(user:NAME, team:NAME, pipeline:ID).")
    written, optional = _spec_fields(connection_type, template.placeholders)
    doc["spec"] = _section({"type": connection_type, **written}, _marked(template))
    _comment(doc, "spec", "\n".join(
        [f"Plaintext settings of a {connection_type} connection."]
        + _optional_lines(optional, template.spec)))
    fields = credential_fields(connection_type, auth)
    doc["credential"] = CommentedMap((field, SECRET_PLACEHOLDER) for field in fields)
    _comment(doc, "credential", "\n".join([
        "The only encrypted part. Each value is a placeholder until you set it:",
        *(f"  connc secret set {connection_id} {field} < FILE" for field in fields),
        template.credential.format(id=connection_id)] if fields else [
        "The only encrypted part.", template.credential.format(id=connection_id)]))
    return doc


def _marked(template: Template) -> dict[str, str]:
    """The spec's help, with the help of a placeholder holding REPLACE-ME marked so
    (kubernetes --auth oidc: its identity's audience)."""
    return {key: f"{REPLACE}: {help_text}" if REPLACE in str(template.placeholders.get(key))
            and not help_text.startswith(f"{REPLACE}:") else help_text
            for key, help_text in template.spec.items()}


def _spec_fields(connection_type: str, placeholders: dict[str, Any] | None = None
                 ) -> tuple[dict[str, Any], list[str]]:
    """(fields written with their default or placeholder, optional fields left out)."""
    if placeholders is None:
        placeholders = TEMPLATES[connection_type].placeholders
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


def _section(values: dict[str, Any], help_by_key: dict[str, str]) -> CommentedMap:
    section = CommentedMap(values)
    for key in values:
        if key in help_by_key:
            _comment(section, key, help_by_key[key], indent=2)
    return section


def _comment(mapping: CommentedMap, key: str, text: str, indent: int = 0) -> None:
    mapping.yaml_set_comment_before_after_key(key, before=text, indent=indent)


def _optional_lines(keys: list[str], help_by_key: dict[str, str]) -> list[str]:
    lines = []
    for key in keys:
        first, *rest = help_by_key[key].splitlines()
        lines.append(f"Optional `{key}`: {first}")
        lines.extend(f"  {line}" for line in rest)
    return lines


def _header(connection_type: str, connection_id: str, auth: str | None = None) -> str:
    if secretless({"type": connection_type, "auth": auth}):
        return "\n".join([
            f"{connection_id}: a secretless {connection_type} connection, made by `connc new`.",
            "Only `credential` is encrypted (sops), and it holds only the seal: render "
            "exchanges",
            "the CI job's OIDC identity. The rest is plaintext, reviewed in pull requests.",
            f"Replace each value marked {REPLACE}, run `connc validate`, open a pull request.",
        ])
    return "\n".join([
        f"{connection_id}: a {connection_type} connection, made by `connc new`.",
        "Only `credential` is encrypted (sops); the rest is plaintext, reviewed in pull requests.",
        f"Replace each value marked {REPLACE}, set the secrets (see `credential` below), then",
        "run `connc validate` and open a pull request.",
    ])


def sealed(doc: CommentedMap) -> CommentedMap:
    """The document with its seal (spec 4.2), as every command that writes a credential adds
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
    written = KUBERNETES_OIDC_PLACEHOLDERS if auth == "oidc" else \
        TEMPLATES[connection_type].placeholders
    return Created(relpath, connection_id, connection_type, owner, visibility,
                   credential_fields(connection_type, auth), placeholders,
                   [f for f in found if f.code != "CONNC111"],
                   [(f"spec.{key}", value) for key, value in written.items()
                    if f"spec.{key}" not in reported
                    and not any(r.startswith(f"spec.{key}.") for r in reported)])


def _check_arguments(connection_type: str, connection_id: str, visibility: str,
                     members: tuple[str, ...]) -> None:
    if connection_type not in TEMPLATES:
        alias = ALIASES.get(connection_type.lower())
        hint = (f"; did you mean `{alias[0]}`{alias[1]}?" if alias
                else suggest(connection_type, TEMPLATES))
        raise UsageError(f"unknown connection type `{printable(connection_type, 40)}`{hint} "
                         f"The types are {', '.join(TEMPLATES)}")
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
        sops.encrypt_in_place(root, relpath, deadline=process.Deadline(ENCRYPT_TIMEOUT))
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
