"""No value connc calls a secret is ever quoted, by any command, in any format.

A secret-looking value (CONNC403's patterns: tokens, PEM private keys, base64 PEM private
keys) or a value under a secret's name can be pasted into any field a reviewer reads in the
clear. Every message that quotes a field would then print it: into a CI log, an `::error`
annotation, a pull-request comment that outlives a force-push. `secrets.redact` replaces each
one by its kind wherever connc makes text (findings, errors, diff rows, `printable`).

The walk: a repository with every file kind and every connection type; each field (value or
key, the sops block's too) replaced in turn by a GitHub token, each value also by a PEM or a
base64 PEM private key, each mapping given a `password` that matches no pattern; and every
command that reads the repository run on it: validate in each format, render, diff or
approvals, access, keys, check (the formats of the others taking turns across the fields).
No output may hold any ten characters of a secret.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connc import documents
from connc.diff.compare import Change
from connc.errors import ConncError
from connc.findings import finding, printable
from connc.secrets import redact, redact_data, what_secret
from kit.build import (
    TEST_RECIPIENT,
    commit,
    connection,
    git,
    make_repo,
    sops_rules,
    write,
)
from kit.keys import certificate_pem, ec_key, key_pem, rsa_key, ssh_key_pair
from kit.run import in_process

# Random-looking bodies, so that any part of one in an output is a leak, not a coincidence.
TOKEN = "ghp_" + "Qz7Kv2Lw9Xc4Rb8Tn1Pm6Hs3Jd5Gf0Ya2Ue"
PEM_BODY = ("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7Vj4Xq9Zt2Lm8Kp"
            "Wy5Rn3Ht7Gc1Fd0Sb6Mx2Jv4Qa9Pe8Ou3Ki7Yl5Tz1Nw0Hr6Cs2Dg4Bf8Em9Va3Ux")
PEM = ("-----BEGIN PRIVATE KEY-----\n" + PEM_BODY[:64] + "\n" + PEM_BODY[64:]
        + "\n-----END PRIVATE KEY-----\n")
BASE64_PEM = base64.b64encode(PEM.encode()).decode()
NAMED = "Hunter2-Vq8Zr4Lk1Wp7"  # no pattern: a secret only because of the key it sits under
SENTINELS = {"token": TOKEN, "pem": PEM, "base64-pem": BASE64_PEM}
WINDOW = 10  # characters: any run this long of a secret's private part is a leak


def _private_parts() -> list[str]:
    # The secret parts: a token after its public prefix, a key's body, its base64 after the
    # encoded header (`-----BEGIN PRIVATE KEY-----` is in every PEM file, so is no leak).
    return [TOKEN[4:], PEM_BODY, BASE64_PEM[40:], NAMED]


LEAKS = sorted({part[start:start + WINDOW] for part in _private_parts()
                for start in range(len(part) - WINDOW + 1)})


def assert_no_leak(text: str, where: str) -> None:
    leaked = [window for window in LEAKS if window in text]
    assert not leaked, f"{where} quotes a secret ({leaked[0]!r}):\n{text}"


# ---------------------------------------------------------------------------- redact itself


@pytest.mark.parametrize("secret", [TOKEN, PEM, BASE64_PEM, "glpat-" + "AbCdEfGhIjKlMnOpQrSt",
                                    "AKIA" + "IOSFODNN7EXAMPLE", "xoxb-" + "123456789012-abcdefghij",
                                    "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
                                    "AGE-SECRET-" + "KEY-1" + "QYZ8" * 14])
def test_redact_names_every_kind_and_keeps_the_rest(secret: str) -> None:
    label = what_secret(None, secret)
    assert label is not None
    text = f"owner `{secret.strip()}` is not a user"
    assert redact(text) == f"owner `[{label}]` is not a user"
    # With line breaks as JSON, `printable` and GitHub's workflow commands show them.
    tail = PEM_BODY[-WINDOW:] if secret == PEM else secret[-WINDOW:]
    for shown in (json.dumps(text), text.replace("\n", "\N{REPLACEMENT CHARACTER}"),
                  text.replace("\n", "%0A")):
        assert tail in shown and tail not in redact(shown)
    assert tail not in printable(text)


def test_redact_leaves_public_pem_blocks_and_plain_text_alone() -> None:
    certificate = base64.b64encode(certificate_pem(ec_key())).decode()
    text = f"`spec.certificateAuthorityData` is {certificate}; owner `alice`, url https://x/"
    assert redact(text) == text


def test_a_key_block_cut_short_is_hidden_to_its_end() -> None:
    assert redact(f"`{PEM[:90]}…` and more") == "`[a private key]…` and more"


def test_redact_data_reaches_every_string() -> None:
    data = {"a": [TOKEN, {PEM.strip(): 1}], "b": PEM.strip() + '"', "c": 2}
    assert redact_data(data) == {"a": ["[a GitHub token]", {"[a private key]": 1}],
                                 "b": '[a private key]"', "c": 2}


@pytest.mark.parametrize("cut", [40, 90, len(PEM) - 3])
def test_redacting_json_text_keeps_it_json(cut: int) -> None:
    # A match never takes a quote or a lone backslash: `\"` right after a key stays whole.
    data = {"a": PEM[:cut] + '"\\', "b": [BASE64_PEM + '\\"', TOKEN + '"']}
    assert json.loads(redact(json.dumps(data))) == redact_data(data)


def test_findings_errors_and_rows_are_redacted_when_made() -> None:
    made = finding(f"pipelines.d/{TOKEN}.yaml", 3, 4, "CONNC201", f"owner `{TOKEN}`")
    assert (made.path, made.message) == ("pipelines.d/[a GitHub token].yaml",
                                         "owner `[a GitHub token]`")
    assert str(ConncError(f"team `{PEM.strip()}`", path=TOKEN)) == \
        "[a GitHub token]: team `[a private key]`"
    row = Change("scopes", "owner changed", {"before": "alice", "after": BASE64_PEM})
    assert row.values == {"before": "alice", "after": "[a base64-encoded private key]"}


# ---------------------------------------------------------------------------- the walk


CONNECTIONS: dict[str, dict[str, Any]] = {
    "gh": connection("gh", type_="github-app", visibility="custom",
                     members=["user:bob", "team:platform", "pipeline:deploy"],
                     description="the GitHub App", expiresAt="2099-01-01",
                     spec={"url": "https://github.com/acme", "apiUrl": "https://api.github.com",
                           "clientId": "Iv23liFake", "installationId": 42},
                     credential={"privateKey": key_pem(rsa_key())}),
    "k8s": connection("k8s", type_="kubernetes", visibility="public",
                      spec={"server": "https://k8s.example.com:6443", "namespace": "apps",
                            "certificateAuthorityData": base64.b64encode(
                                certificate_pem(ec_key())).decode()},
                      credential={"token": "fake-kube-token"}),
    "ssh": connection("ssh", type_="git", visibility="public",
                      spec={"url": "ssh://git@git.example.com/org/repo.git",
                            "knownHosts": "git.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA"
                                          "IOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"},
                      credential={"sshPrivateKey": ssh_key_pair()[0]}),
    "npm": connection("npm", type_="packages", visibility="public",
                      spec={"format": "npm", "url": "https://npm.example.com/",
                            "npmScopes": ["@acme"]},
                      credential={"token": "fake-npm-token"}),
    "mvn": connection("mvn", type_="packages", visibility="public",
                      spec={"format": "maven", "url": "https://maven.example.com/repo/",
                            "repositoryId": "internal"},
                      credential={"username": "robot", "password": "fake-password"}),
    "reg": connection("reg", type_="container-registry", visibility="public",
                      spec={"registry": "registry.example.com:5000"},
                      credential={"username": "robot", "password": "fake-password"}),
}
PIPELINE: dict[str, Any] = {
    "apiVersion": "connc/v1", "kind": "Pipeline",
    "metadata": {"id": "deploy", "owner": "alice", "name": "Deploy", "description": "deploys",
                 "teams": ["platform"], "recipients": [TEST_RECIPIENT]},
    "uses": [{"connection": "gh", "repositories": ["api"], "permissions": {"contents": "read"},
              "refresh": True}, *({"connection": cid} for cid in CONNECTIONS if cid != "gh")],
}
MEMBERS: dict[str, Any] = {
    "apiVersion": "connc/v1", "kind": "Members",
    "users": {"alice": {"name": "Alice", "github": "achen", "githubId": 101,
                        "recipients": [TEST_RECIPIENT]},
              "bob": {"github": "bobm", "recipients": [TEST_RECIPIENT]}},
    "teams": {"platform": {"members": ["alice", "bob"], "recipients": [TEST_RECIPIENT]}},
}
CONFIG: dict[str, Any] = {
    "apiVersion": "connc/v1", "kind": "Config", "admins": ["alice"],
    "adminRecipients": [TEST_RECIPIENT], "expiryWarningDays": 30, "requireSeals": True,
    "githubApp": {"requirePermissions": True},
}

# Each file whose every field the walk replaces. One connection file is walked whole (its
# `sops` block and credential too); the others' `spec`, which differs by type.
WALKED = {"members.yaml": (), "connc.yaml": (), ".sops.yaml": (),
          "pipelines.d/deploy.yaml": (), "connections.d/gh.sops.yaml": (),
          **{f"connections.d/{cid}.sops.yaml": ("spec",) for cid in CONNECTIONS if cid != "gh"}}
SOPS_BLOCK = [("sops", "age", 0, "recipient"), ("sops", "age", 0, "enc"), ("sops", "mac"),
              ("sops", "lastmodified"), ("sops", "encrypted_regex"), ("sops", "version"),
              ("sops", "mac_only_encrypted")]
# Files every other file is checked against: a field of theirs is replaced on its own, so
# that no other replacement hides the messages it causes.
SHARED = ("members.yaml", "connc.yaml", ".sops.yaml")


@dataclasses.dataclass(frozen=True)
class Replacement:
    relpath: str
    path: tuple[str | int, ...]
    is_key: bool | None  # None: a key added, with the secret as its value
    secret: str

    def __str__(self) -> str:
        kind = next((k for k, v in SENTINELS.items() if v == self.secret), "named")
        return (f"{self.relpath}:{'.'.join(map(str, self.path))}"
                f"{'(key)' if self.is_key else ''}:{kind}")

    def apply(self, root: Path) -> None:
        """Edit the file as a pull request can: its plaintext, without a key (sops
        authenticates the encrypted values only: `mac_only_encrypted`)."""
        file = root / self.relpath
        data = documents.parse(file.read_text(encoding="utf-8")).data
        parent = _at(data, self.path[:-1])
        if self.is_key:
            parent[self.secret] = parent.pop(self.path[-1])
        else:
            parent[self.path[-1]] = self.secret
        file.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _fields(data: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...],
                                                                        bool]]:
    """(path, is_key) of every scalar and every mapping key under `data`."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield path + (key,), True
            yield from _fields(value, path + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _fields(value, path + (index,))
    else:
        yield path, False


def _at(data: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        data = data[step]
    return data


def _replacements(relpath: str, data: dict[str, Any]) -> Iterator[Replacement]:
    under = WALKED[relpath]
    fields = [f for f in _fields(data) if f[0][:len(under)] == under and f[0] != under]
    if relpath.endswith("gh.sops.yaml"):
        fields += [(path, False) for path in SOPS_BLOCK]
    for index, (path, is_key) in enumerate(fields):
        yield Replacement(relpath, path, is_key, TOKEN)
        if not is_key:  # a key is one line of text: the token stands for every kind there
            yield Replacement(relpath, path, is_key, (PEM, BASE64_PEM)[index % 2])
    # A value that is a secret only by the name of its key, in each mapping.
    for path, is_key in fields:
        if is_key and isinstance(_at(data, path), dict) and not under:
            yield Replacement(relpath, path + ("password",), None, NAMED)


def _groups() -> list[list[Replacement]]:
    """Replacements to run together: one per file of the pipeline and the connections at a
    time (validate reads every file, so none hides another's), each in a shared file alone."""
    documents_of = {
        "members.yaml": MEMBERS, "connc.yaml": CONFIG, ".sops.yaml": sops_rules(),
        "pipelines.d/deploy.yaml": PIPELINE,
        **{f"connections.d/{cid}.sops.yaml": doc for cid, doc in CONNECTIONS.items()}}
    per_file = {relpath: list(_replacements(relpath, documents_of[relpath]))
                for relpath in WALKED}
    alone = [[r] for relpath in SHARED for r in per_file[relpath]]
    together = itertools.zip_longest(*(per_file[f] for f in WALKED if f not in SHARED))
    return alone + [[r for r in group if r is not None] for group in together]


GROUPS = _groups()


def _commands(index: int, out: Path, group: list[Replacement]) -> list[list[str]]:
    """Every command that reads the repository. `diff` and `approvals` (which prints diff's
    rows) and the formats of each take turns across the groups: they print the same
    redacted values. check reads connections and the policy files, not members.yaml."""
    def turn(*choices: Any) -> Any:
        return choices[index % len(choices)]

    review = turn(["diff", "HEAD", "--format", "markdown"],
                  ["approvals", "HEAD", "--approved-by", "bob", "--format", "text"],
                  ["diff", "HEAD", "--format", "json"],
                  ["approvals", "HEAD", "--approved-by", "bob", "--format", "json"])
    commands = [*(["validate", "--format", fmt] for fmt in ("text", "json", "github")),
                ["render", "deploy", "--out", str(out)], review,
                ["access", "--format", turn("table", "json", "csv")],
                ["keys", "--format", turn("table", "json")]]
    checked = sorted({r.relpath.split("/")[1].split(".")[0] for r in group
                      if r.relpath.startswith("connections.d/")})
    if checked or any(r.relpath in ("connc.yaml", ".sops.yaml") for r in group):
        commands.append(["check", "--format", turn("text", "json"), "--timeout", "0.5",
                         *(checked or ["gh"])])
    return commands


@pytest.fixture(scope="module")
def walked_repository(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("home")
        patch.setenv("HOME", str(home))
        patch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
        root = make_repo(tmp_path_factory.mktemp("walk") / "repo", members=MEMBERS,
                         connections=CONNECTIONS, pipelines={"deploy": PIPELINE},
                         rules=sops_rules())
        write(root, "connc.yaml", CONFIG)
        git(root, "init", "-q")
        commit(root, "base")
        yield root


def test_the_walked_repository_is_clean(walked_repository: Path, tmp_path: Path) -> None:
    """Each replacement is then the only thing wrong, and every command reads every file."""
    code, stdout, stderr = in_process("validate", "--strict", cwd=walked_repository)
    assert code == 0, stdout + stderr
    code, stdout, stderr = in_process("validate", "--strict", "--decrypt",
                                      cwd=walked_repository)
    assert code == 0, stdout + stderr


@pytest.mark.parametrize("index", range(len(GROUPS)),
                         ids=[str(group[0]) for group in GROUPS])
def test_no_command_quotes_a_secret_in_any_field(walked_repository: Path, tmp_path: Path,
                                                  index: int) -> None:
    root = walked_repository
    group = GROUPS[index]
    before = {r.relpath: (root / r.relpath).read_bytes() for r in group}
    try:
        for replacement in group:
            replacement.apply(root)
        for argv in _commands(index, tmp_path / "out", group):
            code, stdout, stderr = in_process(*argv, cwd=root)
            output = stdout + stderr
            assert code in (0, 1, 2), f"connc {' '.join(argv)} exited {code}:\n{output}"
            assert_no_leak(output, f"{', '.join(map(str, group))}: connc {' '.join(argv)}")
    finally:
        for relpath, content in before.items():
            (root / relpath).write_bytes(content)
