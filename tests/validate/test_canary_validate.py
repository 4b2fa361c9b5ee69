"""The canary: no secret value ever reaches validate's output, whatever goes wrong.

Repositories are built whose secret values carry a sentinel, placed to trip every failing
check we can reach, keyless and with `--decrypt` (including decryption failures). Validate
runs in a fresh interpreter in each output format, and neither stdout nor stderr may contain
the sentinel or a transformed form of it (base64, hex, URL-encoded).

The sentinel sits in secret and free-text fields, and in identifier fields where it is not a
valid identifier. A *valid* identifier (an owner or team name) is echoed by design: it names
a principal, it is not a secret.
"""

from __future__ import annotations

import base64
import pickle
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from connc.credentials import credential_problems
from connc.secrets import Secret
from kit.build import (
    REPO_ROOT,
    TEST_KEY_FILE,
    TEST_RECIPIENT,
    connection,
    encrypt,
    make_repo,
    pipeline,
    sops_rules,
    write,
)
from kit.keys import certificate_pem, ec_key, key_pem, new_age_key
from kit.run import connc

SENTINEL = "CANARY-s3cr3t-7f2a9"
SENTINEL_UPPER = "CANARYS3CR3T7F2A9"  # for formats that allow only [A-Z0-9]
WITH_SPECIALS = f"p@ss/{SENTINEL} w+rd&x=1"

GITHUB_TOKEN = f"ghp_{SENTINEL_UPPER}abcdefghijklmnopqrs"
GITLAB_TOKEN = f"glpat-{SENTINEL}-xxxxxxxx"
AGE_SECRET = f"AGE-SECRET-KEY-1{SENTINEL_UPPER}{'QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L' * 2}"
PEM_LOOKING = (f"-----BEGIN RSA PRIVATE KEY-----\nMIIEpA{SENTINEL}IBAAKCAQEA\n"
               f"-----END RSA PRIVATE KEY-----\n")
B64_PEM_LOOKING = base64.b64encode(PEM_LOOKING.encode()).decode()


def base64_fragments(secret: str) -> set[str]:
    """What any base64 text containing `secret` must contain, whatever its byte offset."""
    fragments = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret.encode()).decode()
        fragments.add(encoded[4 if offset else 0:-4])
    return fragments


FORBIDDEN = sorted(
    {SENTINEL, SENTINEL_UPPER, SENTINEL.encode().hex(), SENTINEL_UPPER.encode().hex(),
     quote(WITH_SPECIALS, safe=""), quote_plus(WITH_SPECIALS)}
    | base64_fragments(SENTINEL) | base64_fragments(SENTINEL_UPPER)
)


def assert_no_canary(text: str, where: str) -> None:
    for form in FORBIDDEN:
        assert form not in text, f"{where} leaks the canary (as {form!r}):\n{text}"


# ---------------------------------------------------------------------------- repository

ENC_VALUE = re.compile(r"ENC\[AES256_GCM,data:[^\]]*\]")


def replace_in(root: Path, relpath: str, pattern: str, new: str) -> None:
    path = root / relpath
    text, count = re.subn(pattern, lambda _m: new, path.read_text(), count=1)
    assert count == 1, f"{pattern!r} not in {relpath}"
    path.write_text(text)


def secret_credentials() -> dict[str, dict[str, Any]]:
    """Encrypted connections whose decrypted values fail the --decrypt content checks."""
    key = ec_key()
    other = ec_key()
    mismatched_cert = base64.b64encode(certificate_pem(key, SENTINEL)).decode()
    unmatched_key = base64.b64encode(key_pem(other).encode()).decode()
    return {
        "gh-bad-pem": connection("gh-bad-pem", type_="github-app",
                                 spec={"clientId": "Iv23liABCDEF", "installationId": 1},
                                 credential={"privateKey": PEM_LOOKING}),
        "gh-ec-key": connection("gh-ec-key", type_="github-app",
                                spec={"appId": 7, "installationId": 1},
                                credential={"privateKey": key_pem(key)}),
        "git-ssh": connection("git-ssh", type_="git",
                              spec={"url": "ssh://git@git.example.com/r.git",
                                    "knownHosts": "git.example.com ssh-ed25519 AAAA"},
                              credential={"sshPrivateKey": f"-----BEGIN OPENSSH PRIVATE KEY-----"
                                                           f"\n{SENTINEL}\n"}),
        "k8s-not-b64": connection("k8s-not-b64", type_="kubernetes",
                                  spec={"server": "https://kube.example.com"},
                                  credential={"clientCertificateData": f"{SENTINEL}!!",
                                              "clientKeyData": B64_PEM_LOOKING}),
        "k8s-mismatch": connection("k8s-mismatch", type_="kubernetes",
                                   spec={"server": "https://kube.example.com"},
                                   credential={"clientCertificateData": mismatched_cert,
                                               "clientKeyData": unmatched_key}),
        "ctrl-newline": connection("ctrl-newline", type_="container-registry",
                                   spec={"registry": "registry.example.com"},
                                   credential={"username": f"robot\n{SENTINEL}",
                                               "password": f"{SENTINEL}\x07"}),
        "ctrl-escape": connection("ctrl-escape", type_="codeup",
                                  credential={"username": "u", "password": f"\x1b[2J{SENTINEL}"}),
        "empty-and-tab": connection("empty-and-tab", type_="packages",
                                    spec={"format": "npm", "url": "https://npm.example.com"},
                                    credential={"token": f"{SENTINEL}\t", "username": " "}),
    }


def keyless_failures() -> dict[str, dict[str, Any]]:
    """Connections that fail keyless checks with the canary in the failing value."""
    return {
        "secret-in-description": connection(
            "secret-in-description", description=f"deploy with {GITHUB_TOKEN} or {GITLAB_TOKEN}",
            credential={"token": SENTINEL}),
        "secret-fields": connection(
            "secret-fields", type_="gitlab-self-hosted",
            spec={"url": "https://git.example.com", "password": SENTINEL,
                  "privateKey": PEM_LOOKING, "caData": B64_PEM_LOOKING},
            credential={"token": SENTINEL}),
        "unknown-fields": {**connection("unknown-fields", notes=SENTINEL, labels=[WITH_SPECIALS],
                                        credential={"token": SENTINEL}),
                           "extra": {"nested": [SENTINEL, {"deeper": AGE_SECRET}]}},
        "wrong-types": connection(
            "wrong-types", type_="kubernetes", visibility=SENTINEL, name=[SENTINEL],
            expiresAt=SENTINEL, members=[SENTINEL, f"user:{SENTINEL}!"],
            spec={"server": "https://kube.example.com", "namespace": SENTINEL,
                  "insecureSkipTlsVerify": SENTINEL, "certificateAuthorityData": B64_PEM_LOOKING},
            credential={"token": SENTINEL}),
        "wrong-type-app": connection(
            "wrong-type-app", type_="github-app",
            spec={"clientId": SENTINEL, "appId": SENTINEL, "installationId": SENTINEL,
                  "apiUrl": f"http://{SENTINEL}.example.com"},
            credential={"privateKey": PEM_LOOKING}),
        "unknown-type": connection("unknown-type", type_=SENTINEL,
                                   credential={"token": SENTINEL}),
        "packages-format": connection("packages-format", type_="packages",
                                      spec={"format": SENTINEL, "url": "https://x.example.com",
                                            "repositoryId": WITH_SPECIALS},
                                      credential={"token": SENTINEL}),
        "expired": connection("expired", expiresAt="2020-01-01", credential={"token": SENTINEL}),
        "expiring": connection("expiring", expiresAt="2020-01-01T00:00:00Z",
                               credential={"token": GITLAB_TOKEN}),
        "bad-id": connection(SENTINEL, credential={"token": SENTINEL}),
        "bad-id-two": connection(f"{SENTINEL.lower()}!", credential={"token": SENTINEL}),
        **{f"url-{index}": connection(f"url-{index}", type_="gitlab-self-hosted",
                                      spec={"url": url}, credential={"token": SENTINEL})
           for index, url in enumerate([
               f"http://{SENTINEL}.example.com/",
               f"https://oauth2:{SENTINEL}@gitlab.example.com/",
               f"https://{SENTINEL}@gitlab.example.com/",
               f"https://gitlab.example.com/?private_token={SENTINEL}",
               f"https://gitlab.example.com/#{SENTINEL}",
               f"https://[{SENTINEL}]/",
               f"https://[v1.{SENTINEL}]/",
               f"https://gitlab.example.com:{SENTINEL}/",
               f"ftp://{SENTINEL}/",
               f"https://gitlab.example.com/{SENTINEL}\n/x",
               SENTINEL,
               f"https://gitlab.example.com/{quote(WITH_SPECIALS)} x",
           ])},
        "bad-ca": connection("bad-ca", type_="kubernetes", credential={"token": SENTINEL},
                             spec={"server": "https://kube.example.com",
                                   "certificateAuthorityData": base64.b64encode(
                                       f"-----BEGIN CERTIFICATE-----\n{SENTINEL}\n"
                                       f"-----END CERTIFICATE-----\n".encode()).decode()}),
        "registry": connection("registry", type_="container-registry",
                               spec={"registry": f"{SENTINEL}!:{SENTINEL}"},
                               credential={"username": "u", "password": SENTINEL}),
    }


# Raw text: YAML that does not parse, or parses with duplicates, around the canary.
BROKEN_TEXT = {
    "syntax-quote": f'apiVersion: connc/v1\nkind: Connection\nmetadata:\n  description: "{SENTINEL}\n',
    "syntax-mapping": f"apiVersion: connc/v1\ncredential:\n  password: {SENTINEL}: oops\n",
    "syntax-flow": f"apiVersion: connc/v1\ncredential: {{password: [{SENTINEL}\n",
    "syntax-tab": f"apiVersion: connc/v1\ncredential:\n\tpassword: {SENTINEL}\n",
    "syntax-alias": f"apiVersion: connc/v1\ncredential:\n  password: *{SENTINEL}\n",
    "syntax-escape": f'apiVersion: connc/v1\ncredential:\n  password: "{SENTINEL}\\q"\n',
    "syntax-indent": f"apiVersion: connc/v1\ncredential:\n  token: a\n password: {SENTINEL}\n",
    "two-documents": f"apiVersion: connc/v1\n---\npassword: {SENTINEL}\n",
    "non-utf8": f"apiVersion: connc/v1\npassword: {SENTINEL}\xff\n",
    "duplicate-keys": (f"apiVersion: connc/v1\nkind: Connection\nmetadata:\n"
                       f"  description: {SENTINEL}\n  description: {SENTINEL}x\n"
                       f"credential:\n  token: {SENTINEL}\n  token: {SENTINEL}\n"),
    "wrong-kind": f"apiVersion: {SENTINEL}\nkind: {SENTINEL}\npassword: {SENTINEL}\n",
    "a-list": f"- password: {SENTINEL}\n- {SENTINEL}\n",
    "a-scalar": f"{SENTINEL}\n",
    # A line break YAML reads and an editor does not, in a comment and before a secret.
    "hidden-break": f"apiVersion: connc/v1\n# {SENTINEL}\u0085password: {SENTINEL}\n",
}


def build(root: Path, tmp: Path) -> Path:
    """One repository that trips every check we can reach, with the canary everywhere."""
    other_key, other_recipient = new_age_key(tmp)
    connections = {**secret_credentials(), **keyless_failures(),
                   "plain": connection("plain", credential={"token": SENTINEL}),
                   "tampered": connection("tampered", credential={"token": SENTINEL}),
                   "plaintext-added": connection("plaintext-added", type_="bitbucket",
                                                 credential={"token": SENTINEL}),
                   "enc-replaced": connection("enc-replaced", credential={"token": SENTINEL}),
                   "nested-value": connection("nested-value", credential={"token": SENTINEL}),
                   "mac-tampered": connection("mac-tampered", credential={"token": SENTINEL}),
                   "lastmodified": connection("lastmodified", credential={"token": SENTINEL}),
                   "no-mac": connection("no-mac", credential={"token": SENTINEL}),
                   "other-key": connection("other-key", credential={"token": SENTINEL})}
    members = {
        "apiVersion": "connc/v1", "kind": "Members",
        "users": {"alice": {"name": SENTINEL, "recipients": [AGE_SECRET]},
                  "bob": {"password": SENTINEL}, "carol": {"recipients": SENTINEL}},
        "teams": {"platform": {"members": ["alice", f"{SENTINEL}!"], "token": GITHUB_TOKEN}},
    }
    make_repo(root, connections=connections, members=members, pipelines={
        "release": {**pipeline("release", "plain", "expired", SENTINEL, teams=[f"{SENTINEL}!"]),
                    "notes": {"password": SENTINEL}},
        "dupes": pipeline("dupes", "plain", "plain"),
    })
    _tamper(root, other_recipient)
    for name, text in BROKEN_TEXT.items():
        write(root, f"connections.d/{name}.sops.yaml", text.encode("utf-8", "surrogateescape")
              if name != "non-utf8" else text.encode("latin-1"))
    write(root, "pipelines.d/broken.yaml", BROKEN_TEXT["duplicate-keys"])
    # A name that is another file's on macOS (its canary content is never read), and an
    # attribute that would rewrite a file on checkout.
    write(root, "pipelines.d/Broken.yaml", BROKEN_TEXT["duplicate-keys"])
    write(root, ".gitattributes", "pipelines.d/typed.yaml ident\n")
    write(root, "pipelines.d/typed.yaml", {
        "apiVersion": "connc/v1", "kind": "Pipeline",
        "metadata": {"id": "typed", "owner": "alice", "description": SENTINEL,
                     "recipients": [SENTINEL]},
        "uses": [{"connection": "plain", "repositories": [WITH_SPECIALS],
                  "permissions": {"contents": SENTINEL, SENTINEL: "read"}, "refresh": SENTINEL},
                 SENTINEL]})
    write(root, "connc.yaml", {"apiVersion": "connc/v1", "kind": "Config",
                               "adminRecipients": [SENTINEL], "expiryWarningDays": SENTINEL,
                               "token": SENTINEL})
    # A recipient pasted as a private key by mistake: a drift finding must not print it. The
    # drift is on one file only: --decrypt decrypts no file validate refuses, and the others
    # must reach their content checks.
    rules = sops_rules()
    rules["creation_rules"].append({"path_regex": "^never$", "age": AGE_SECRET})
    rules["creation_rules"].insert(0, {**rules["creation_rules"][0],
                                       "path_regex": r"^connections\.d/expired\.sops\.yaml$",
                                       "age": f"{TEST_RECIPIENT},{AGE_SECRET}"})
    write(root, ".sops.yaml", rules)
    # The key of the other recipient stays outside the repository, unused.
    assert other_key.parent == tmp
    return root


def _tamper(root: Path, other_recipient: str) -> None:
    """Break encrypted files after the fact, as a careless edit or an attacker would."""
    conn = "connections.d/{}.sops.yaml".format
    shutil.copy(root / conn("plain"), root / conn("copied"))  # copied credential + id mismatch
    text = (root / conn("tampered")).read_text()
    data = re.search(r"token: ENC\[AES256_GCM,data:([A-Za-z0-9+/]{4})", text)
    assert data is not None
    replace_in(root, conn("tampered"), re.escape(data.group(0)),
               data.group(0)[:-4] + ("AAAA" if data.group(1) != "AAAA" else "BBBB"))
    replace_in(root, conn("plaintext-added"), r"credential:\n",
               f"credential:\n    password: {SENTINEL}\n    username: {GITHUB_TOKEN}\n")
    replace_in(root, conn("enc-replaced"), r"token: ENC\[.*\]", f"token: ENC[{SENTINEL}]")
    replace_in(root, conn("nested-value"), r"credential:\n",
               f"credential:\n    extra:\n        nested: {SENTINEL}\n    num: 12345\n")
    replace_in(root, conn("mac-tampered"), r"mac: ENC\[AES256_GCM,data:",
               "mac: ENC[AES256_GCM,data:AAAA")
    replace_in(root, conn("lastmodified"), r"lastmodified: .*", f'lastmodified: "{SENTINEL}"')
    replace_in(root, conn("no-mac"), r"    mac: .*\n", "")
    # Encrypted to a key the test environment does not hold.
    write(root, ".sops.yaml", sops_rules(other_recipient))
    write(root, conn("other-key"), connection("other-key", credential={"token": SENTINEL}))
    encrypt(root, conn("other-key"))


@pytest.fixture(scope="module")
def canary_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("canary")
    return build(tmp / "repo", tmp)


# ---------------------------------------------------------------------------- the runs


def test_the_repository_really_holds_the_canary(canary_repo: Path) -> None:
    # Guard against a vacuous pass: the plaintext files do contain it.
    text = "".join(p.read_text(errors="replace") for p in canary_repo.rglob("*.yaml"))
    assert SENTINEL in text and GITHUB_TOKEN in text and AGE_SECRET in text


FORMATS = ("text", "json", "github")
# (format, key): validate keyless, with --decrypt and the test key, and --decrypt with no key.
RUNS = [(fmt, key) for fmt in FORMATS for key in ("keyless", "decrypt")] + [("json", "no-key")]


@pytest.fixture(scope="module")
def outputs(canary_repo: Path) -> dict[tuple[str, str], subprocess.CompletedProcess[str]]:
    """Every run, in parallel: each is a fresh interpreter waiting mostly on sops."""
    # "no-key": a key that is none of the files' recipients (each file then says whose key it
    # is not among its recipients); no key at all is an environment error said once (exit 2,
    # tests/core/test_sops_keys.py).
    other_key, _public = new_age_key(canary_repo.parent, "not-a-recipient.txt")

    def run(fmt: str, key: str) -> subprocess.CompletedProcess[str]:
        decrypt = ["--decrypt"] if key != "keyless" else []
        return connc("validate", "--repo", str(canary_repo), "--format", fmt, *decrypt,
                     key={"decrypt": TEST_KEY_FILE, "no-key": other_key}.get(key), cwd=REPO_ROOT)

    with ThreadPoolExecutor(max_workers=len(RUNS)) as pool:
        futures = {run_id: pool.submit(run, *run_id) for run_id in RUNS}
        return {run_id: future.result() for run_id, future in futures.items()}


@pytest.mark.parametrize("run_id", RUNS, ids=["-".join(run_id) for run_id in RUNS])
def test_validate_never_prints_the_canary(
        outputs: dict[tuple[str, str], subprocess.CompletedProcess[str]],
        run_id: tuple[str, str]) -> None:
    result = outputs[run_id]
    assert_no_canary(result.stdout, "stdout")
    assert_no_canary(result.stderr, "stderr")
    assert result.returncode == 1, result.stderr
    assert result.stderr == ""
    assert_many_checks_were_reached(result.stdout, run_id[1] == "decrypt")
    if run_id[1] == "no-key":
        assert "is not among this file's recipients" in result.stdout


# Codes each run must produce, proving the canary went through those paths.
KEYLESS_CODES = {"CONNC001", "CONNC002", "CONNC005", "CONNC010", "CONNC015", "CONNC016",
                 "CONNC017", "CONNC101", "CONNC102",
                 "CONNC103", "CONNC104", "CONNC105", "CONNC107", "CONNC109", "CONNC208", "CONNC402", "CONNC403", "CONNC405", "CONNC410", "CONNC411",
                 "CONNC412", "CONNC501"}
DECRYPT_CODES = {"CONNC601", "CONNC602", "CONNC603", "CONNC604", "CONNC605", "CONNC606"}


def assert_many_checks_were_reached(stdout: str, decrypt: bool) -> None:
    codes = set(re.findall(r"CONNC\d{3}", stdout))
    assert codes >= KEYLESS_CODES, sorted(KEYLESS_CODES - codes)
    if decrypt:
        assert codes >= DECRYPT_CODES, sorted(DECRYPT_CODES - codes)


def test_content_check_messages_in_process() -> None:
    for document in secret_credentials().values():
        credential = {k: Secret(v) for k, v in document["credential"].items()}
        for _field, _code, message in credential_problems(document["metadata"]["id"],
                                                          document["spec"], credential):
            assert_no_canary(message, "a content finding")


# ---------------------------------------------------------------------------- Secret


@pytest.mark.parametrize("value", [SENTINEL, PEM_LOOKING, GITHUB_TOKEN])
def test_secret_never_shows_its_value(value: str) -> None:
    secret = Secret(value)
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>40}",
             "%s %r" % (secret, secret),  # noqa: UP031 - %-formatting is a path too
             repr({"token": secret}), repr([secret]),
             str((secret,))]
    for text in shown:
        assert_no_canary(text, "Secret")
        assert "*" in text
    assert secret.reveal() == value


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_secret_cannot_be_pickled(protocol: int) -> None:
    with pytest.raises(TypeError) as caught:
        pickle.dumps({"token": Secret(SENTINEL)}, protocol=protocol)
    assert_no_canary(str(caught.value), "the pickling error")


def test_secret_holds_only_text() -> None:
    with pytest.raises(TypeError) as caught:
        Secret(SENTINEL.encode())  # type: ignore[arg-type]
    assert_no_canary(str(caught.value), "the type error")
