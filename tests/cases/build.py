"""Build the golden corpus of `connc validate`: tests/cases/{valid,invalid,invalid-decrypt}/<case>/.

Run from the repository root (the venv has sops, cryptography and PyYAML):

    .venv/bin/python tests/cases/build.py              # rebuild every case
    .venv/bin/python tests/cases/build.py expired ...  # rebuild only the named cases
    .venv/bin/python tests/cases/build.py --list       # list the cases and what each proves

Each case is a small, complete connection repository. Its connection files are encrypted with
the real sops binary to the TEST age key (tests/keys/test-age-key.txt), exactly as a user would:
the plaintext is written to its final path and `sops encrypt --in-place` runs from the case's
root. Some cases then edit the result (change `.sops.yaml`, copy a credential, drop a sops
field) to reproduce what happens in real repositories after encryption.

Every case writes `expected.json`: the exit code and the exact set of findings as
(code, path, line). Lines are not typed by hand: each expectation names a regular expression,
and the line is that of its first match in the final file (after sops rewrote it), so the
corpus survives a change of sops' layout. A rebuild is deterministic in structure; only
ciphertexts, sops' timestamps and freshly generated PEM material change.

Two cases cannot be committed as files and are finished by tests/validate/test_cases.py at test time,
as `expected.json`'s `materialise` says: a file over the size limit, and a symlink to /etc/passwd.

The other age recipients below are public keys whose secret halves were thrown away: nobody can
decrypt to them, which is the point (a recipient outside the scope; a file nobody here can open).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import re
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/, for the kit

from kit.build import TEST_RECIPIENT, connection, encrypt, pipeline, write  # noqa: E402

OTHER_RECIPIENT = "age1f6hsk73maksgw5ux02dnqhxxzxwlxn3vpeh09zafeefvyhdwkpcqrzvm9d"
TEAM_RECIPIENT = "age12la0mhspwf2g88v5w9vewh9svf6yj0fdlej8d92x74k8rh2jaymqc90e5g"
ADMIN_RECIPIENT = "age1cem8kh6cfettj3qndhpugumhj5qvysznhflmyumkjkavwmygt5rq0y78ju"
RUNNER_RECIPIENT = "age1l7ffnu2v5tq5kh99k0m4vwrkpl5v6c2h246ypu99zh8awt7z7vnqrzxzkf"

FOLDERS = ("valid", "invalid", "invalid-decrypt")

Files = dict[str, "str | bytes | Mapping[str, Any] | None"]


# ---------------------------------------------------------------------------- documents


def sops_config(*recipients: str, path_regex: str = r"^connections\.d/.*\.sops\.yaml$",
                mac_only: bool = True) -> str:
    """.sops.yaml as text, so cases can show (and edit) exactly what a user would write."""
    lines = ["creation_rules:",
             f"  - path_regex: {path_regex}",
             "    encrypted_regex: ^credential$"]
    if mac_only:
        lines.append("    mac_only_encrypted: true")
    lines.append(f"    age: {','.join(recipients or (TEST_RECIPIENT,))}")
    return "\n".join(lines) + "\n"


MEMBERS = """\
apiVersion: connc/v1
kind: Members
users:
  alice: {name: Alice Chen}
  bob: {name: Bob Li}
  carol: {name: Carol Diaz}
teams:
  platform: {members: [alice, bob]}
  ops: {members: [carol]}
"""

GITLAB = connection("gitlab-acme")  # private to alice, token credential
# Keyless cases only: the key is encrypted and never parsed without --decrypt.
GITHUB = connection("github-acme", type_="github-app",
                    spec={"clientId": "Iv23liFAKE0000000000", "installationId": 4242},
                    credential={"privateKey": "fake-private-key"})


def gitlab(conn_id: str = "gitlab-acme", **kwargs: Any) -> dict[str, Any]:
    return connection(conn_id, **kwargs)


def uses(pipeline_id: str, *entries: Mapping[str, Any], owner: str = "alice",
         teams: list[str] | None = None) -> dict[str, Any]:
    """A pipeline whose `uses` entries carry options (kit.build.pipeline takes ids only)."""
    document = pipeline(pipeline_id, owner=owner, teams=teams)
    document["uses"] = [dict(entry) for entry in entries]
    return document


def with_recipients(document: dict[str, Any], *recipients: str) -> dict[str, Any]:
    """A pipeline document with its runner keys (`metadata.recipients`)."""
    document["metadata"]["recipients"] = list(recipients)
    return document


def sops_rules(*rules: tuple[str, tuple[str, ...]]) -> str:
    """.sops.yaml with one rule per (connection id, recipients), then the catch-all rule to
    the test key: the layout `connc keys sync` writes, as text a user would."""
    return "creation_rules:\n" + "".join(
        sops_config(*recipients, path_regex=rf"^connections\.d/{cid}\.sops\.yaml$")
        .removeprefix("creation_rules:\n") for cid, recipients in rules
    ) + sops_config().removeprefix("creation_rules:\n")


def config(**settings: Any) -> dict[str, Any]:
    return {"apiVersion": "connc/v1", "kind": "Config", **settings}


# ---------------------------------------------------------------------------- PEM material
# Generated per build: the values are encrypted (or public, for CA data and host keys), so a
# rebuild changing them changes nothing a test reads.


class Material:
    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.client_key = ec.generate_private_key(ec.SECP256R1())
        self.other_key = ec.generate_private_key(ec.SECP256R1())
        self.ssh_key = ed25519.Ed25519PrivateKey.generate()
        self.host_key = ed25519.Ed25519PrivateKey.generate()
        self.ca_cert = self._certificate("connc test CA", self.ca_key, self.ca_key, ca=True)
        self.client_cert = self._certificate("deployer", self.client_key, self.ca_key, ca=False)

    def _certificate(self, name: str, key: Any, issuer_key: Any, *, ca: bool) -> Any:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import NameOID

        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "connc test CA")])
        now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
        return (x509.CertificateBuilder()
                .subject_name(subject).issuer_name(issuer)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + dt.timedelta(days=36500))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .sign(issuer_key, hashes.SHA256()))

    @staticmethod
    def _key_pem(key: Any, fmt: Any = None) -> bytes:
        from cryptography.hazmat.primitives import serialization as s

        pem: bytes = key.private_bytes(s.Encoding.PEM, fmt or s.PrivateFormat.PKCS8,
                                       s.NoEncryption())
        return pem

    def github_private_key(self) -> str:
        from cryptography.hazmat.primitives import serialization as s

        return self._key_pem(self.rsa, s.PrivateFormat.TraditionalOpenSSL).decode()

    def ssh_private_key(self) -> str:
        from cryptography.hazmat.primitives import serialization as s

        return self._key_pem(self.ssh_key, s.PrivateFormat.OpenSSH).decode()

    def known_hosts(self, host: str) -> str:
        from cryptography.hazmat.primitives import serialization as s

        public = self.host_key.public_key().public_bytes(s.Encoding.OpenSSH, s.PublicFormat.OpenSSH)
        return f"{host} {public.decode()}"

    @staticmethod
    def _b64(pem: bytes) -> str:
        return base64.b64encode(pem).decode()

    def ca_data(self) -> str:
        from cryptography.hazmat.primitives import serialization as s

        return self._b64(self.ca_cert.public_bytes(s.Encoding.PEM))

    def client_certificate_data(self) -> str:
        from cryptography.hazmat.primitives import serialization as s

        return self._b64(self.client_cert.public_bytes(s.Encoding.PEM))

    def client_key_data(self, *, matching: bool = True) -> str:
        return self._b64(self._key_pem(self.client_key if matching else self.other_key))


# ---------------------------------------------------------------------------- cases


@dataclasses.dataclass(frozen=True)
class Expect:
    """One finding: its code, file, and a regex whose first matching line is its line."""

    code: str
    path: str
    at: str = ""  # "" means line 1 (a finding about the whole file)


@dataclasses.dataclass
class Case:
    folder: str
    name: str
    about: str
    files: Files
    expect: list[Expect]
    exit: int = 1
    message_contains: dict[str, str] = dataclasses.field(default_factory=dict)
    # .sops.yaml in force while encrypting, when the case changes it afterwards
    encrypt_with: str | None = None
    plaintext: tuple[str, ...] = ()  # connection files left unencrypted
    unsealed: tuple[str, ...] = ()  # connection files encrypted without a seal
    after: Callable[[Path], object] | None = None  # edits after encryption
    materialise: dict[str, Any] | None = None


def base_files(**changes: Any) -> Files:
    """.sops.yaml and members.yaml, plus the given files; a value of None removes a file."""
    return {".sops.yaml": sops_config(), "members.yaml": MEMBERS, **changes}


def conn(conn_id: str) -> str:
    return f"connections.d/{conn_id}.sops.yaml"


def pipe(pipeline_id: str) -> str:
    return f"pipelines.d/{pipeline_id}.yaml"


def edit(path: Path, old: str, new: str, *, count: int = 1) -> None:
    """Replace `old` (which must occur exactly `count` times) in a built file."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == count, f"{path}: expected {count}x {old!r}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def regex_edit(path: Path, pattern: str, new: str | Callable[[str], str]) -> str:
    """Replace the one match of `pattern` (multiline) with `new` (or `new(match)`)."""
    text = path.read_text(encoding="utf-8")
    matches = list(re.finditer(pattern, text, re.MULTILINE))
    assert len(matches) == 1, f"{path}: expected one match of {pattern!r}"
    found = matches[0].group(0)
    replacement = new(found) if callable(new) else new
    path.write_text(text[: matches[0].start()] + replacement + text[matches[0].end():],
                    encoding="utf-8")
    return found


def insert_after(path: Path, pattern: str, line: str) -> None:
    """Add `line` after the one line matching `pattern`."""
    regex_edit(path, pattern, lambda found: f"{found}\n{line}")


def valid_cases(pem: Material) -> list[Case]:
    every_type = {
        "github-acme": connection(
            "github-acme", type_="github-app",
            spec={"clientId": "Iv23liFAKE0000000000", "installationId": 4242},
            credential={"privateKey": pem.github_private_key()},
            description="GitHub App of the acme org", expiresAt=dt.date(2090, 3, 1)),
        "github-enterprise": connection(
            "github-enterprise", type_="github-app",
            spec={"url": "https://github.example.com",
                  "apiUrl": "https://github.example.com/api/v3", "appId": 17, "installationId": 3},
            credential={"privateKey": pem.github_private_key()}),
        "gitlab-acme": gitlab(),
        "gitlab-internal": connection(
            "gitlab-internal", type_="gitlab-self-hosted",
            spec={"url": "https://gitlab.example.com/platform/"},
            credential={"token": "fake-gitlab-token", "username": "deploy-bot"}),
        "codeup-acme": connection("codeup-acme", type_="codeup",
                                  credential={"username": "deploy", "password": "fake-password"}),
        "bitbucket-acme": connection("bitbucket-acme", type_="bitbucket",
                                     spec={"url": "https://bitbucket.org/acme"}),
        "bitbucket-user": connection(
            "bitbucket-user", type_="bitbucket",
            credential={"username": "deploy", "password": "fake-password"}),
        "git-https": connection("git-https", type_="git",
                                spec={"url": "https://git.example.com/org-a/"},
                                credential={"username": "deploy", "password": "fake-password"}),
        "git-ssh": connection("git-ssh", type_="git",
                              spec={"url": "ssh://git@git.example.com:2222/org-a",
                                    "knownHosts": pem.known_hosts("[git.example.com]:2222")},
                              credential={"sshPrivateKey": pem.ssh_private_key()}),
        "registry-prod": connection("registry-prod", type_="container-registry",
                                    spec={"registry": "registry.example.com:5000"},
                                    credential={"username": "ci", "password": "fake-password"}),
        "dockerhub": connection("dockerhub", type_="container-registry",
                                spec={"registry": "https://index.docker.io/v1/"},
                                credential={"username": "acme", "password": "fake-password"}),
        "k8s-prod": connection("k8s-prod", type_="kubernetes",
                               spec={"server": "https://k8s.example.com:6443",
                                     "certificateAuthorityData": pem.ca_data(),
                                     "namespace": "apps"}),
        "k8s-cert": connection("k8s-cert", type_="kubernetes",
                               spec={"server": "https://127.0.0.1:6443",
                                     "certificateAuthorityData": pem.ca_data()},
                               credential={"clientCertificateData": pem.client_certificate_data(),
                                           "clientKeyData": pem.client_key_data()}),
        "maven-internal": connection(
            "maven-internal", type_="packages",
            spec={"format": "maven", "url": "https://maven.example.com/repo",
                  "repositoryId": "internal"},
            credential={"username": "ci", "password": "fake-password"}),
        "npm-internal": connection("npm-internal", type_="packages",
                                   spec={"format": "npm", "url": "https://npm.example.com/"}),
        "pypi-internal": connection(
            "pypi-internal", type_="packages",
            spec={"format": "pypi", "url": "https://pypi.example.com/simple/"},
            credential={"username": "ci", "password": "fake-password"}),
    }
    return [
        Case("valid", "minimal", "one private connection, used by its owner's pipeline",
             base_files(**{conn("gitlab-acme"): GITLAB,
                           pipe("release"): pipeline("release", "gitlab-acme")}),
             [], exit=0),
        Case("valid", "every-type", "every connection type and credential variant, used by one "
             "pipeline of their owner; real PEM keys and certificates, so --decrypt passes too",
             base_files(**{conn(cid): doc for cid, doc in every_type.items()},
                        **{pipe("everything"): pipeline("everything", *every_type)}),
             [], exit=0),
        Case("valid", "scopes", "a custom connection reached through each kind of member (user, "
             "team, pipeline) and by its owner, and a public one used by another owner",
             base_files(**{
                 conn("gitlab-shared"): gitlab(
                     "gitlab-shared", visibility="custom",
                     members=["user:bob", "team:ops", "pipeline:nightly"]),
                 conn("registry-public"): connection(
                     "registry-public", type_="container-registry", visibility="public",
                     spec={"registry": "ghcr.io"},
                     credential={"username": "acme", "password": "fake-password"}),
                 pipe("owner-release"): pipeline("owner-release", "gitlab-shared"),
                 pipe("bob-deploy"): pipeline("bob-deploy", "gitlab-shared", "registry-public",
                                              owner="bob"),
                 pipe("ops-build"): pipeline("ops-build", "gitlab-shared", owner="carol",
                                             teams=["ops"]),
                 pipe("nightly"): pipeline("nightly", "gitlab-shared", owner="carol"),
             }),
             [], exit=0),
        Case("valid", "github-app-options", "repositories, permissions (levels as GitHub "
             "offers them) and refresh on a github-app connection, under connc.yaml's "
             "requirePermissions (which leaves other types alone); users with distinct GitHub "
             "logins, admins who are users",
             base_files(**{
                 "members.yaml": MEMBERS.replace(
                     "alice: {name: Alice Chen}", "alice: {name: Alice Chen, github: achen}"
                 ).replace("bob: {name: Bob Li}", "bob: {name: Bob Li, github: AChen-2}"),
                 "connc.yaml": config(admins=["alice", "bob"],
                                      githubApp={"requirePermissions": True}),
                 conn("github-acme"): every_type["github-acme"],
                 conn("gitlab-acme"): GITLAB,
                 pipe("api-release"): uses("api-release", {
                     "connection": "github-acme", "repositories": ["api", "web.site", "x_y-z"],
                     "permissions": {"contents": "write", "pull_requests": "read",
                                     "metadata": "read", "workflows": "write",
                                     "organization_plan": "read", "repository_projects": "admin"},
                     "refresh": True}, {"connection": "gitlab-acme"}),
             }),
             [], exit=0),
        Case("valid", "recipients-in-scope", "members declare age recipients; each file is "
             "encrypted to exactly its scope (owner, team and its members) plus connc.yaml's "
             "adminRecipients",
             base_files(**{
                 ".sops.yaml": sops_config(TEST_RECIPIENT, TEAM_RECIPIENT, ADMIN_RECIPIENT),
                 "members.yaml": MEMBERS.replace(
                     "alice: {name: Alice Chen}",
                     f"alice: {{name: Alice Chen, recipients: [{TEST_RECIPIENT}]}}").replace(
                     "ops: {members: [carol]}",
                     f"ops: {{members: [carol], recipients: [{TEAM_RECIPIENT}]}}"),
                 "connc.yaml": config(adminRecipients=[ADMIN_RECIPIENT]),
                 conn("gitlab-acme"): gitlab(visibility="custom", members=["team:ops"]),
                 pipe("ops-build"): pipeline("ops-build", "gitlab-acme", owner="carol",
                                             teams=["ops"]),
             }),
             [], exit=0),
        Case("valid", "runner-keys-in-scope", "pipelines that may use a connection are in "
             "its scope with their runner keys: its owner's pipeline's own key on a private "
             "connection, a team's runner key on a public one; a member whose key is not on "
             "the file, because no pipeline of theirs uses it, is no finding",
             base_files(**{
                 ".sops.yaml": sops_rules(
                     ("gitlab-acme", (TEST_RECIPIENT, ADMIN_RECIPIENT, RUNNER_RECIPIENT)),
                     ("registry-public", (TEST_RECIPIENT, ADMIN_RECIPIENT, TEAM_RECIPIENT)),
                     ("gitlab-shared", (TEST_RECIPIENT, ADMIN_RECIPIENT))),
                 "members.yaml": MEMBERS.replace(
                     "alice: {name: Alice Chen}",
                     f"alice: {{name: Alice Chen, recipients: [{TEST_RECIPIENT}]}}").replace(
                     "carol: {name: Carol Diaz}",
                     f"carol: {{name: Carol Diaz, recipients: [{OTHER_RECIPIENT}]}}").replace(
                     "ops: {members: [carol]}",
                     f"ops: {{members: [carol], recipients: [{TEAM_RECIPIENT}]}}"),
                 "connc.yaml": config(adminRecipients=[ADMIN_RECIPIENT]),
                 conn("gitlab-acme"): GITLAB,
                 conn("registry-public"): connection(
                     "registry-public", type_="container-registry", visibility="public",
                     spec={"registry": "ghcr.io"},
                     credential={"username": "acme", "password": "fake-password"}),
                 conn("gitlab-shared"): gitlab("gitlab-shared", visibility="custom",
                                               members=["user:carol"]),
                 pipe("release"): with_recipients(pipeline("release", "gitlab-acme"),
                                                  RUNNER_RECIPIENT),
                 pipe("ops-build"): pipeline("ops-build", "registry-public", owner="carol",
                                             teams=["ops"]),
             }),
             [], exit=0),
        Case("valid", "rule-go-regex-syntax", "a path_regex in Go's RE2 syntax that Python's re "
             "refused (`(?i)` mid-pattern, `\\pL`, `\\pN`, `\\z`); sops encrypted the file "
             "with this very rule",
             base_files(**{
                 ".sops.yaml": sops_config(
                     path_regex=r"^connections\.d/(?i)\pL[\pL\pN-]*\.SOPS\.yaml\z"),
                 conn("gitlab-acme"): GITLAB,
                 pipe("release"): pipeline("release", "gitlab-acme"),
             }),
             [], exit=0),
    ]


def file_cases() -> list[Case]:
    release = pipe("release")
    with_connection = {conn("gitlab-acme"): GITLAB}
    bomb = ["apiVersion: connc/v1", "kind: Pipeline", "metadata:", "  id: release",
            "  owner: alice", "  description: &a0 [lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, 6):
        bomb.append(f"  x{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 8) + "]")
    return [
        Case("invalid", "yaml-syntax-error", "a YAML syntax error points at its line and column",
             base_files(**with_connection, **{release: (
                 "apiVersion: connc/v1\nkind: Pipeline\nmetadata:\n  id: release\n"
                 "  owner: alice: bob\nuses:\n  - connection: gitlab-acme\n")}),
             [Expect("CONNC001", release, "owner: alice: bob")]),
        Case("invalid", "yaml-tab-indent", "a tab in indentation is a syntax error with a hint",
             base_files(**with_connection, **{release: (
                 "apiVersion: connc/v1\nkind: Pipeline\nmetadata:\n\tid: release\n"
                 "  owner: alice\n")}),
             [Expect("CONNC001", release, "^\tid")],
             message_contains={"CONNC001": "tab"}),
        Case("invalid", "duplicate-key", "a key repeated in one mapping (YAML keeps the last)",
             base_files(**with_connection, **{release: (
                 "apiVersion: connc/v1\nkind: Pipeline\nmetadata:\n  id: release\n"
                 "  owner: alice\n  owner: alice\nuses:\n  - connection: gitlab-acme\n")}),
             [Expect("CONNC002", release, r"(?<=owner: alice\n)  owner")]),
        Case("invalid", "empty-file", "an empty pipeline file",
             base_files(**{release: ""}),
             [Expect("CONNC004", release)]),
        Case("invalid", "several-documents", "two YAML documents in one file",
             base_files(**with_connection, **{release: (
                 "apiVersion: connc/v1\nkind: Pipeline\nmetadata:\n  id: release\n"
                 "  owner: alice\n---\napiVersion: connc/v1\nkind: Pipeline\n"
                 "metadata:\n  id: nightly\n  owner: alice\n")}),
             [Expect("CONNC005", release, r"(?<=---\n)apiVersion")]),
        Case("invalid", "file-too-large", "a file over 1 MiB is not read (made at test time)",
             base_files(**with_connection),
             [Expect("CONNC006", pipe("huge"))],
             materialise={"large_files": [pipe("huge")]}),
        Case("invalid", "symlink-outside", "a pipeline file that is a symlink to /etc/passwd "
             "(made at test time)",
             base_files(**with_connection),
             [Expect("CONNC007", pipe("passwd"))],
             materialise={"symlinks": {pipe("passwd"): "/etc/passwd"}}),
        Case("invalid", "directory-as-connection", "a directory named like a connection file",
             base_files(**with_connection, **{conn("broken") + "/.keep": ""}),
             [Expect("CONNC008", conn("broken"))]),
        Case("invalid", "members-is-directory", "members.yaml is a directory",
             base_files(**{"members.yaml": None, "members.yaml/.keep": ""}),
             [Expect("CONNC008", "members.yaml")],
             message_contains={"CONNC008": "members.yaml"}),
        Case("invalid", "alias-bomb", "a 'billion laughs' of YAML aliases is cut off",
             base_files(**{release: "\n".join(bomb) + "\n"}),
             [Expect("CONNC009", release, "&a0")]),
        Case("invalid", "not-utf8", "Latin-1 bytes in a pipeline file",
             base_files(**{release: (
                 "apiVersion: connc/v1\nkind: Pipeline\nmetadata:\n  id: release\n"
                 "  owner: alice\n  description: d\xe9ploiement\n").encode("latin-1")}),
             [Expect("CONNC010", release, "description")]),
        Case("invalid", "members-missing", "no members.yaml: references cannot be checked",
             base_files(**with_connection, **{"members.yaml": None,
                                              release: pipeline("release", "gitlab-acme")}),
             [Expect("CONNC011", "members.yaml")]),
        Case("invalid", "misnamed-file", "a pipeline file with a .yml suffix is not read",
             base_files(**{pipe("release")[:-5] + ".yml": pipeline("release")}),
             [Expect("CONNC012", "pipelines.d/release.yml")]),
        Case("invalid", "byte-order-mark", "a UTF-8 byte-order mark (a warning)",
             base_files(**{release: "\ufeffapiVersion: connc/v1\nkind: Pipeline\nmetadata:\n"
                                    "  id: release\n  owner: alice\n"}),
             [Expect("CONNC013", release)], exit=0),
        Case("invalid", "hidden-line-break", "a NEL in a comment, a line break to YAML that "
             "editors do not show, is refused at its own line and column",
             base_files(**{release: (
                 "apiVersion: connc/v1\nkind: Pipeline\nmetadata:\n  id: release\n"
                 "  owner: alice  # moved\u0085  owner: bob\n")}),
             [Expect("CONNC015", release, "owner: alice")]),
        Case("invalid", "name-case-folded", "a pipeline file whose name is release.yaml on a "
             "case-insensitive file system is not read",
             base_files(**{"pipelines.d/Release.yaml": pipeline("release")}),
             [Expect("CONNC016", "pipelines.d/Release.yaml")]),
        Case("invalid", "gitattributes-rewrite", "a .gitattributes line that makes git convert "
             "the line ends of connc files on checkout",
             base_files(**{".gitattributes": "* text=auto eol=lf\n",
                           release: pipeline("release")}),
             [Expect("CONNC017", ".gitattributes", "text=auto")],
             message_contains={"CONNC017": "`eol=lf`, `text=auto` on `.sops.yaml`, "
                                           "`members.yaml`, `pipelines.d/release.yaml`"}),
        Case("invalid", "sops-config-missing", "no .sops.yaml: recipients cannot be checked",
             base_files(**with_connection),
             [Expect("CONNC014", ".sops.yaml")],
             after=lambda root: (root / ".sops.yaml").unlink()),
        Case("invalid", "sops-config-invalid", "a creation rule whose path_regex does not compile",
             base_files(**with_connection),
             [Expect("CONNC014", ".sops.yaml", "path_regex")],
             after=lambda root: edit(root / ".sops.yaml", r"\.sops\.yaml$", r"(\.sops\.yaml$")),
        Case("invalid", "rule-regex-rejected", "a path_regex with a lookahead: Python's re took "
             "it, RE2 (sops) rejects it",
             base_files(**with_connection, **{".sops.yaml": sops_config(
                 path_regex=r"^connections\.d/(?!tmp-).*\.sops\.yaml$")}),
             [Expect("CONNC014", ".sops.yaml", "path_regex")], encrypt_with=sops_config(),
             message_contains={"CONNC014": "RE2 (sops) rejects it"}),
    ]


def model_cases() -> list[Case]:
    release = pipe("release")
    return [
        Case("invalid", "unknown-field", "a misspelt field, with a suggestion",
             base_files(**{release: (
                 "apiVersion: connc/v1\nkind: Pipeline\nmetadata:\n  id: release\n"
                 "  owner: alice\n  descripton: builds and ships\n")}),
             [Expect("CONNC101", release, "descripton")],
             message_contains={"CONNC101": "did you mean `description`"}),
        Case("invalid", "unknown-credential-field", "a misspelt credential field name is found "
             "keyless (names are plaintext), with the missing field it should have been",
             base_files(**{conn("gitlab-acme"): gitlab(credential={"tokn": "fake-token"})}),
             [Expect("CONNC101", conn("gitlab-acme"), "tokn:"),
              Expect("CONNC103", conn("gitlab-acme"), "^credential:")],
             message_contains={"CONNC101": "did you mean `token`"}),
        Case("invalid", "ssh-without-known-hosts", "a git ssh:// url without knownHosts: the "
             "model's own check, reported where it applies and in its own words",
             base_files(**{conn("git-ssh"): connection(
                 "git-ssh", type_="git", spec={"url": "ssh://git@git.example.com/org-a"},
                 credential={"sshPrivateKey": "fake-key"})}),
             [Expect("CONNC103", conn("git-ssh"), "^spec:")],
             message_contains={"CONNC103": "needs knownHosts"}),
        Case("invalid", "wrong-type", "`uses` given as a string instead of a list",
             base_files(**{release: (
                 "apiVersion: connc/v1\nkind: Pipeline\nmetadata:\n  id: release\n"
                 "  owner: alice\nuses: gitlab-acme\n")}),
             [Expect("CONNC102", release, "^uses:")]),
        Case("invalid", "missing-field", "a pipeline without metadata.owner",
             base_files(**{release: (
                 "apiVersion: connc/v1\nkind: Pipeline\nmetadata:\n  id: release\n")}),
             [Expect("CONNC103", release, "^metadata:")],
             message_contains={"CONNC103": "metadata.owner"}),
        Case("invalid", "wrong-kind", "a Connection document in pipelines.d/",
             base_files(**{release: (
                 "apiVersion: connc/v1\nkind: Connection\nmetadata:\n  id: release\n"
                 "  owner: alice\n")}),
             [Expect("CONNC104", release, "^kind:")]),
        Case("invalid", "wrong-api-version", "apiVersion connc/v2",
             base_files(**{release: (
                 "apiVersion: connc/v2\nkind: Pipeline\nmetadata:\n  id: release\n"
                 "  owner: alice\n")}),
             [Expect("CONNC104", release, "^apiVersion:")]),
        Case("invalid", "id-mismatch", "metadata.id differs from the file name",
             base_files(**{release: pipeline("release-prod")}),
             [Expect("CONNC105", release, "id: release-prod")]),
        Case("invalid", "duplicate-id", "two pipeline files with one id; the second file's "
             "name cannot match it, so CONNC105 comes along",
             base_files(**{release: pipeline("release"),
                           pipe("release-copy"): pipeline("release")}),
             [Expect("CONNC106", release, "id: release"),
              Expect("CONNC105", pipe("release-copy"), "id: release")]),
        Case("invalid", "insecure-url", "plain http:// to a host that is not loopback",
             base_files(**{conn("gitlab-internal"): connection(
                 "gitlab-internal", type_="gitlab-self-hosted",
                 spec={"url": "http://gitlab.example.com"})}),
             [Expect("CONNC107", conn("gitlab-internal"), "url: http://")]),
        Case("invalid", "tls-verify-disabled", "insecureSkipTlsVerify: true (a warning)",
             base_files(**{conn("k8s-dev"): connection(
                 "k8s-dev", type_="kubernetes",
                 spec={"server": "https://k8s.example.com", "insecureSkipTlsVerify": True})}),
             [Expect("CONNC108", conn("k8s-dev"), "insecureSkipTlsVerify")], exit=0),
        Case("invalid", "bad-ca-data", "certificateAuthorityData that is not base64 PEM",
             base_files(**{conn("k8s-prod"): connection(
                 "k8s-prod", type_="kubernetes",
                 spec={"server": "https://k8s.example.com",
                       "certificateAuthorityData": base64.b64encode(b"not a cert").decode()})}),
             [Expect("CONNC109", conn("k8s-prod"), "certificateAuthorityData")]),
        Case("invalid", "known-hosts-other-host", "an ssh connection's knownHosts vouches for "
             "every host with `@cert-authority *` (a man in the middle on another connection)",
             base_files(**{conn("git-ssh"): connection(
                 "git-ssh", type_="git", spec={
                     "url": "ssh://git@git.example.com/org-a",
                     # GitHub's public ed25519 host key: only the host fields matter here.
                     "knownHosts": "".join(
                         f"{host} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsab"
                         f"gH5C9okWi0dh2l9GKJl\n" for host in ("git.example.com",
                                                                "@cert-authority *"))},
                 credential={"sshPrivateKey": "fake-key"})}),
             [Expect("CONNC110", conn("git-ssh"), "knownHosts:")],
             message_contains={"CONNC110": "line 2"}),
    ]


def reference_cases() -> list[Case]:
    release = pipe("release")
    base = {conn("gitlab-acme"): GITLAB}
    return [
        Case("invalid", "unknown-owner", "a connection owned by nobody in members.yaml",
             base_files(**{conn("gitlab-acme"): gitlab(owner="alcie")}),
             [Expect("CONNC201", conn("gitlab-acme"), "owner: alcie")],
             message_contains={"CONNC201": "did you mean `alice`"}),
        Case("invalid", "unknown-member", "a scope member that does not exist",
             base_files(**{conn("gitlab-acme"): gitlab(visibility="custom",
                                                       members=["user:bob", "team:platfrom"])}),
             [Expect("CONNC202", conn("gitlab-acme"), "team:platfrom")],
             message_contains={"CONNC202": "did you mean `platform`"}),
        Case("invalid", "unknown-team", "a pipeline claiming a team that does not exist",
             base_files(**base, **{release: pipeline("release", "gitlab-acme",
                                                     teams=["platfrom"])}),
             [Expect("CONNC203", release, "- platfrom")]),
        Case("invalid", "owner-not-in-team", "a pipeline claiming a team its owner is not in",
             base_files(**base, **{release: pipeline("release", owner="carol",
                                                     teams=["platform"])}),
             [Expect("CONNC204", release, "- platform")]),
        Case("invalid", "unknown-connection", "a pipeline using a connection that does not exist",
             base_files(**base, **{release: pipeline("release", "gitlab-acm")}),
             [Expect("CONNC205", release, "connection: gitlab-acm$")],
             message_contains={"CONNC205": "did you mean `gitlab-acme`"}),
        Case("invalid", "unknown-team-member", "a team listing a user not under `users`",
             base_files(**{"members.yaml": MEMBERS.replace("members: [carol]",
                                                           "members: [carol, dave]")}),
             [Expect("CONNC206", "members.yaml", "dave")]),
        Case("invalid", "github-option-on-gitlab", "`repositories` on a gitlab connection",
             base_files(**base, **{release: uses(
                 "release", {"connection": "gitlab-acme", "repositories": ["api"]})}),
             [Expect("CONNC207", release, "repositories:")]),
        Case("invalid", "duplicate-use", "the same connection twice in one pipeline",
             base_files(**base, **{release: pipeline("release", "gitlab-acme", "gitlab-acme")}),
             [Expect("CONNC208", release, r"(?<=connection: gitlab-acme\n)- connection")]),
        Case("invalid", "members-on-public", "scope.members on a public connection (a warning)",
             base_files(**{conn("gitlab-acme"): gitlab(visibility="public", members=["user:bob"])}),
             [Expect("CONNC209", conn("gitlab-acme"), "members:")], exit=0),
    ]


def github_cases() -> list[Case]:
    """How a pipeline narrows a GitHub App token (docs/render.md), and who consents (docs/approvals.md)."""
    release = pipe("release")
    base = {conn("github-acme"): GITHUB}
    return [
        Case("invalid", "github-permission-unknown", "a misspelt GitHub App permission, with a "
             "suggestion",
             base_files(**base, **{release: uses(
                 "release", {"connection": "github-acme",
                             "permissions": {"contentz": "read", "issues": "write"}})}),
             [Expect("CONNC210", release, "contentz:")],
             message_contains={"CONNC210": "did you mean `contents`"}),
        Case("invalid", "github-permission-level", "a level GitHub does not offer for that "
             "permission (organization_plan is read only)",
             base_files(**base, **{release: uses(
                 "release", {"connection": "github-acme",
                             "permissions": {"contents": "read", "organization_plan": "write"}})}),
             [Expect("CONNC211", release, "organization_plan: write")],
             message_contains={"CONNC211": "`read`"}),
        Case("invalid", "github-permissions-required", "connc.yaml requires permissions and a "
             "github-app use declares none",
             base_files(**base, **{"connc.yaml": config(githubApp={"requirePermissions": True}),
                                   release: uses("release", {"connection": "github-acme",
                                                             "repositories": ["api"]})}),
             [Expect("CONNC212", release, "connection: github-acme")]),
        Case("invalid", "github-repository-owner-name", "`repositories: [acme/api]`: GitHub "
             "takes bare names",
             base_files(**base, **{release: uses(
                 "release", {"connection": "github-acme", "repositories": ["web", "acme/api"]})}),
             [Expect("CONNC213", release, "- acme/api")]),
        Case("invalid", "github-login-shared", "two users name the same GitHub login, in "
             "different case",
             base_files(**{"members.yaml": MEMBERS.replace(
                 "alice: {name: Alice Chen}", "alice: {name: Alice Chen, github: achen}"
             ).replace("bob: {name: Bob Li}", "bob: {name: Bob Li, github: AChen}")}),
             [Expect("CONNC214", "members.yaml", "github: AChen")],
             message_contains={"CONNC214": "`alice`"}),
        Case("invalid", "admin-unknown", "connc.yaml names an admin who is not a user",
             base_files(**{"connc.yaml": config(admins=["alice", "alcie"])}),
             [Expect("CONNC215", "connc.yaml", "- alcie")],
             message_contains={"CONNC215": "did you mean `alice`"}),
    ]


def scope_cases() -> list[Case]:
    deploy = pipe("deploy")
    return [
        Case("invalid", "scope-private", "bob's pipeline uses alice's private connection",
             base_files(**{conn("gitlab-acme"): GITLAB,
                           deploy: pipeline("deploy", "gitlab-acme", owner="bob")}),
             [Expect("CONNC301", deploy, "connection: gitlab-acme")]),
        Case("invalid", "scope-custom-user", "a custom connection that lists user:carol, used by "
             "bob's pipeline",
             base_files(**{conn("gitlab-acme"): gitlab(visibility="custom", members=["user:carol"]),
                           deploy: pipeline("deploy", "gitlab-acme", owner="bob")}),
             [Expect("CONNC302", deploy, "connection: gitlab-acme")]),
        Case("invalid", "scope-custom-team", "a custom connection that lists team:ops, used by a "
             "pipeline of team platform",
             base_files(**{conn("gitlab-acme"): gitlab(visibility="custom", members=["team:ops"]),
                           deploy: pipeline("deploy", "gitlab-acme", owner="bob",
                                            teams=["platform"])}),
             [Expect("CONNC302", deploy, "connection: gitlab-acme")]),
        Case("invalid", "scope-custom-pipeline", "a custom connection that lists "
             "pipeline:nightly, used by pipeline deploy",
             base_files(**{conn("gitlab-acme"): gitlab(visibility="custom",
                                                       members=["pipeline:nightly"]),
                           pipe("nightly"): pipeline("nightly", "gitlab-acme", owner="bob"),
                           deploy: pipeline("deploy", "gitlab-acme", owner="bob")}),
             [Expect("CONNC302", deploy, "connection: gitlab-acme")]),
    ]


def _copy_credential(root: Path) -> None:
    source = (root / conn("gitlab-acme")).read_text(encoding="utf-8")
    (root / conn("gitlab-copy")).write_text(source.replace("gitlab-acme", "gitlab-copy"),
                                            encoding="utf-8")


def _paste_encrypted_value(root: Path) -> None:
    path = root / conn("gitlab-acme")
    token = regex_edit(path, r"(?<=    token: )ENC\[[^\]]*\]", lambda found: found)
    edit(path, "name: gitlab-acme", f"name: {token}")


def encryption_cases() -> list[Case]:
    path = conn("gitlab-acme")
    recipient_members = MEMBERS.replace(
        "alice: {name: Alice Chen}", f"alice: {{name: Alice Chen, recipients: [{TEST_RECIPIENT}]}}")
    return [
        Case("invalid", "not-encrypted", "a connection file never encrypted with sops",
             base_files(**{path: GITLAB}), [Expect("CONNC401", path)], plaintext=(path,)),
        Case("invalid", "plaintext-in-credential", "a credential value added in plaintext after "
             "encryption",
             base_files(**{path: GITLAB}),
             [Expect("CONNC402", path, "username: deploy-bot")],
             after=lambda root: insert_after(root / path, r"^    token: .*$",
                                             "    username: deploy-bot")),
        Case("invalid", "secret-in-description", "a GitHub token pasted into metadata.description",
             base_files(**{path: gitlab(
                 description="mirror token ghp_FAKEfakeFAKEfakeFAKEfakeFAKEfake0000")}),
             [Expect("CONNC403", path, "description:")],
             message_contains={"CONNC403": "GitHub token"}),
        Case("invalid", "encrypted-outside-credential", "an ENC[...] value pasted into "
             "metadata.name", base_files(**{path: GITLAB}),
             [Expect("CONNC404", path, "name: ENC")], after=_paste_encrypted_value),
        Case("invalid", "recipients-drift", "the .sops.yaml recipient changed after encryption "
             "(sops updatekeys was not run)",
             base_files(**{path: GITLAB, ".sops.yaml": sops_config(OTHER_RECIPIENT)}),
             [Expect("CONNC405", path, "^sops:")], encrypt_with=sops_config(),
             message_contains={"CONNC405": "sops updatekeys"}),
        Case("invalid", "no-matching-rule", "no .sops.yaml creation rule covers connections.d/",
             base_files(**{path: GITLAB,
                           ".sops.yaml": sops_config(path_regex=r"^secrets/.*\.yaml$")}),
             [Expect("CONNC406", path, "^sops:")], encrypt_with=sops_config()),
        Case("invalid", "settings-drift", "encrypted without mac_only_encrypted, which the rule "
             "now sets",
             base_files(**{path: GITLAB}),
             [Expect("CONNC407", path, "^sops:")], encrypt_with=sops_config(mac_only=False)),
        Case("invalid", "sops-rule-settings", "a creation rule for connections.d/ without "
             "mac_only_encrypted (the file matches its rule, the rule is wrong)",
             base_files(**{path: GITLAB, ".sops.yaml": sops_config(mac_only=False)}),
             [Expect("CONNC407", ".sops.yaml", "path_regex")]),
        Case("invalid", "recipient-outside-scope", "alice's private connection is also "
             "encrypted to carol's key",
             base_files(**{path: GITLAB,
                           ".sops.yaml": sops_config(TEST_RECIPIENT, OTHER_RECIPIENT),
                           "members.yaml": recipient_members.replace(
                               "carol: {name: Carol Diaz}",
                               f"carol: {{name: Carol Diaz, recipients: [{OTHER_RECIPIENT}]}}")}),
             [Expect("CONNC408", path, "^sops:")],
             message_contains={"CONNC408": OTHER_RECIPIENT}),
        Case("invalid", "principal-without-recipient", "user:bob is in scope but has no "
             "recipient (a warning)",
             base_files(**{path: gitlab(visibility="custom", members=["user:bob"]),
                           "members.yaml": recipient_members}),
             [Expect("CONNC409", path, "^sops:")], exit=0,
             message_contains={"CONNC409": "user:bob"}),
        Case("invalid", "owner-holds-no-key", "alice owns the connection and declares a key, "
             "but the file is encrypted only to the admin key: she cannot rotate or seal it "
             "(a warning)",
             base_files(**{path: GITLAB,
                           "connc.yaml": config(adminRecipients=[TEST_RECIPIENT]),
                           "members.yaml": MEMBERS.replace(
                               "alice: {name: Alice Chen}",
                               f"alice: {{name: Alice Chen, recipients: [{OTHER_RECIPIENT}]}}")}),
             [Expect("CONNC409", path, "^sops:")], exit=0,
             message_contains={"CONNC409": "connc keys sync gitlab-acme"}),
        Case("invalid", "pipeline-cannot-decrypt", "pipeline release declares its runner key, "
             "which is not a recipient of the connection it uses: its render will fail",
             base_files(**{path: GITLAB, "members.yaml": recipient_members,
                           pipe("release"): with_recipients(pipeline("release", "gitlab-acme"),
                                                            RUNNER_RECIPIENT)}),
             [Expect("CONNC414", pipe("release"), "connection: gitlab-acme")],
             message_contains={"CONNC414": RUNNER_RECIPIENT}),
        Case("invalid", "copied-credential", "gitlab-copy is gitlab-acme's file with its ids "
             "changed: the same data key and ciphertexts",
             base_files(**{path: GITLAB}),
             [Expect("CONNC410", conn("gitlab-copy"), "^credential:")], after=_copy_credential,
             message_contains={"CONNC410": "gitlab-acme"}),
        Case("invalid", "empty-credential-keyless", "an empty credential value: sops leaves "
             "\"\" unencrypted, so it is found without a key (and is no leak)",
             base_files(**{path: gitlab(credential={"token": ""})}),
             [Expect("CONNC602", path, "token:")]),
        Case("invalid", "wrong-enc-type", "a credential value encrypted as a number",
             base_files(**{path: gitlab(credential={"token": 123456789})}),
             [Expect("CONNC411", path, "token: ENC")]),
        Case("invalid", "scaffold-placeholder", "an endpoint still holding the placeholder "
             "`connc new` wrote: an unfinished connection cannot pass CI",
             base_files(**{conn("k8s-new"): connection(
                 "k8s-new", type_="kubernetes",
                 spec={"server": "https://kubernetes.replace-me.invalid:6443"})}),
             [Expect("CONNC111", conn("k8s-new"), "server:")]),
        Case("invalid", "unsealed", "a credential without a seal: a warning",
             base_files(**{path: GITLAB}), [Expect("CONNC413", path, "^credential:")], exit=0,
             unsealed=(path,)),
        Case("invalid", "unsealed-required", "a credential without a seal where connc.yaml "
             "sets requireSeals: an error",
             base_files(**{path: GITLAB, "connc.yaml": config(requireSeals=True)}),
             [Expect("CONNC413", path, "^credential:")], unsealed=(path,),
             message_contains={"CONNC413": "requireSeals: true"}),
        Case("invalid", "malformed-sops-metadata", "the sops block lost its lastmodified field",
             base_files(**{path: GITLAB}),
             [Expect("CONNC412", path, "^sops:")],
             after=lambda root: regex_edit(root / path, r"^    lastmodified: .*\n", ""),
             message_contains={"CONNC412": "lastmodified"}),
        Case("invalid", "rule-key-groups-weaker", "encrypted to one key group (either key "
             "decrypts); the rule now asks for two groups and both of them: same recipients, "
             "weaker file",
             base_files(**{path: GITLAB, ".sops.yaml": (
                 "creation_rules:\n"
                 "  - path_regex: ^connections\\.d/.*\\.sops\\.yaml$\n"
                 "    encrypted_regex: ^credential$\n"
                 "    mac_only_encrypted: true\n"
                 "    shamir_threshold: 2\n"
                 "    key_groups:\n"
                 f"      - age: [{TEST_RECIPIENT}]\n"
                 f"      - age: [{OTHER_RECIPIENT}]\n")}),
             [Expect("CONNC405", path, "^sops:")],
             encrypt_with=sops_config(TEST_RECIPIENT, OTHER_RECIPIENT),
             message_contains={"CONNC405": "sops updatekeys"}),
    ]


def expiry_cases() -> list[Case]:
    path = conn("gitlab-acme")
    return [
        Case("invalid", "expired", "expiresAt in the past",
             base_files(**{path: gitlab(expiresAt=dt.date(2020, 1, 1))}),
             [Expect("CONNC501", path, "expiresAt")]),
        Case("invalid", "expiring", "expiresAt within connc.yaml's warning window (a warning; the "
             "window is huge so that the case stays stable over time)",
             base_files(**{path: gitlab(expiresAt=dt.date(2090, 1, 1)),
                           "connc.yaml": config(expiryWarningDays=100000)}),
             [Expect("CONNC502", path, "expiresAt")], exit=0),
    ]


def decrypt_cases(pem: Material) -> list[Case]:
    def kube(**credential: str) -> dict[str, Any]:
        return connection("k8s-prod", type_="kubernetes",
                          spec={"server": "https://k8s.example.com",
                                "certificateAuthorityData": pem.ca_data()},
                          credential=credential)

    k8s = conn("k8s-prod")
    path = conn("gitlab-acme")
    return [
        Case("invalid-decrypt", "cannot-decrypt", "one file encrypted only to a key nobody here "
             "holds (when none decrypts, the key is missing: exit 2, no finding)",
             base_files(**{path: GITLAB, conn("gitlab-other"): gitlab("gitlab-other"),
                           ".sops.yaml": sops_config(OTHER_RECIPIENT,
                                                     path_regex=r"^connections\.d/gitlab-acme")
                           + "".join(sops_config().splitlines(keepends=True)[1:])}),
             [Expect("CONNC601", path, "^sops:")]),
        Case("invalid-decrypt", "empty-credential-value", "a credential value of blanks",
             base_files(**{path: gitlab(credential={"token": "   "})}),
             [Expect("CONNC602", path, "token:")]),
        Case("invalid-decrypt", "private-key-invalid", "a github-app privateKey that is not a key",
             base_files(**{conn("github-acme"): connection(
                 "github-acme", type_="github-app",
                 spec={"clientId": "Iv23liFAKE0000000000", "installationId": 4242},
                 credential={"privateKey": "paste the App's private key here"})}),
             [Expect("CONNC603", conn("github-acme"), "privateKey:")]),
        Case("invalid-decrypt", "client-cert-mismatch", "a client certificate issued for "
             "another key",
             base_files(**{k8s: kube(clientCertificateData=pem.client_certificate_data(),
                                     clientKeyData=pem.client_key_data(matching=False))}),
             [Expect("CONNC604", k8s, "clientCertificateData:")]),
        Case("invalid-decrypt", "not-base64-pem", "clientCertificateData holding raw PEM instead "
             "of base64 PEM",
             base_files(**{k8s: kube(clientCertificateData=base64.b64decode(
                 pem.client_certificate_data()).decode(), clientKeyData=pem.client_key_data())}),
             [Expect("CONNC605", k8s, "clientCertificateData:")]),
        Case("invalid-decrypt", "placeholder-credential", "a token still holding the placeholder "
             "that `connc new` writes",
             base_files(**{path: gitlab(credential={"token": "REPLACE-WITH-connc-secret-set"})}),
             [Expect("CONNC607", path, "token:")]),
        Case("invalid-decrypt", "seal-endpoint-changed", "the url edited after the credential "
             "was sealed: it would go to another host",
             base_files(**{path: GITLAB}), [Expect("CONNC608", path, "connc-seal:")],
             after=lambda root: edit(root / path, "type: gitlab",
                                     "type: gitlab\n    url: https://gitlab.evil.example"),
             message_contains={"CONNC608": "spec.url"}),
        Case("invalid-decrypt", "seal-wider-than-file", "a member removed without a reseal: "
             "render accepts it, but until it is resealed the scope can be widened back "
             "without a key",
             base_files(**{path: gitlab(visibility="custom",
                                        members=["team:platform", "user:bob"])}),
             [Expect("CONNC610", path, "^credential:")], exit=0,  # a warning
             after=lambda root: regex_edit(root / path, r"\n *- user:bob", ""),
             message_contains={"CONNC610": "scope.members"}),
        Case("invalid-decrypt", "username-with-colon", "a username with ':' (basic auth would "
             "split it): refused by secret set, validate --decrypt and render alike",
             base_files(**{conn("registry"): connection(
                 "registry", type_="container-registry", spec={"registry": "registry.example.com"},
                 credential={"username": "ci:bot", "password": "fake-password"})}),
             [Expect("CONNC609", conn("registry"), "username:")]),
        Case("invalid-decrypt", "control-character", "a newline inside a token (it would inject "
             "into git's credential protocol)",
             base_files(**{path: gitlab(credential={"token": "fake-token\nprotocol=https"})}),
             [Expect("CONNC606", path, "token:")]),
    ]


def all_cases() -> list[Case]:
    pem = Material()
    return (valid_cases(pem) + file_cases() + model_cases() + reference_cases()
            + github_cases() + scope_cases() + encryption_cases() + expiry_cases() + decrypt_cases(pem))


# ---------------------------------------------------------------------------- building


def write_files(root: Path, files: Files) -> None:
    for relpath, content in files.items():
        if content is None:
            continue
        write(root, relpath, content, width=1000)  # no folding: expected lines stay put


def line_of(root: Path, expect: Expect) -> int:
    if not expect.at:
        return 1
    text = (root / expect.path).read_bytes().decode("utf-8", errors="replace")
    match = re.search(expect.at, text, re.MULTILINE)
    if match is None:
        raise SystemExit(f"{root.name}: /{expect.at}/ not found in {expect.path}")
    return text.count("\n", 0, match.start()) + 1


def build(case: Case) -> Path:
    root = HERE / case.folder / case.name
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    write_files(root, case.files)
    final_rules = case.files.get(".sops.yaml")
    if case.encrypt_with is not None:
        (root / ".sops.yaml").write_text(case.encrypt_with, encoding="utf-8")
    for relpath, content in case.files.items():
        if (relpath.startswith("connections.d/") and relpath.endswith(".sops.yaml")
                and isinstance(content, Mapping) and relpath not in case.plaintext):
            encrypt(root, relpath, sealed=relpath not in case.unsealed)
    if case.encrypt_with is not None and isinstance(final_rules, str):
        (root / ".sops.yaml").write_text(final_rules, encoding="utf-8")
    if case.after is not None:
        case.after(root)
    expected: dict[str, Any] = {
        "about": case.about,
        "exit": case.exit,
        "findings": sorted(({"code": e.code, "path": e.path, "line": line_of(root, e)}
                            for e in case.expect),
                           key=lambda f: (f["path"], f["line"], f["code"])),
    }
    if case.folder == "invalid-decrypt":
        expected["decrypt"] = True
    if case.message_contains:
        expected["message_contains"] = case.message_contains
    if case.materialise:
        expected["materialise"] = case.materialise
    (root / "expected.json").write_text(json.dumps(expected, indent=2) + "\n", encoding="utf-8")
    return root


def main(argv: list[str]) -> int:
    cases = all_cases()
    names = [c.name for c in cases]
    duplicates = {n for n in names if names.count(n) > 1}
    assert not duplicates, f"case names must be unique: {duplicates}"
    if argv[:1] == ["--list"]:
        for case in cases:
            print(f"{case.folder}/{case.name}: {case.about}")
        return 0
    wanted = set(argv)
    unknown = wanted - set(names)
    if unknown:
        print(f"unknown case(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if not wanted:  # a full rebuild also drops cases that no longer exist
        for folder in FOLDERS:
            if (HERE / folder).is_dir():
                shutil.rmtree(HERE / folder)
    for case in cases:
        if not wanted or case.name in wanted:
            build(case)
            print(f"built {case.folder}/{case.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
