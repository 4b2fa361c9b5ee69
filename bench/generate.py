"""Generate a synthetic connection repository for the benchmarks.

    .venv/bin/python bench/generate.py -n 10000            # -> bench/out/repo-10000

N connections of all nine types in realistic proportions, N/5 pipelines that respect scope
(a fifth of them with a runner key of their own, the others rendering with their team's), a
members.yaml of 300 users and 40 teams, each with an age recipient, so validate also runs the
keys checks (CONNC408, CONNC409, CONNC414), connc.yaml and .sops.yaml. Each file is encrypted
as `connc keys sync` leaves it: to the admin key, its owner's key, and the runner keys of the
pipelines that use it, with one creation rule per set of keys (about 2,500 rules at
N = 10,000, a 1.3 MB .sops.yaml). It validates with zero findings (`--strict`): the
benchmarks measure the path a healthy repository takes.

Connection files have the exact shape sops writes (4-space indent, `sops:` block with an age
stanza, lastmodified, mac, encrypted_regex, mac_only_encrypted, version), but their ciphertexts
are random bytes: only the five connections of pipeline `bench-render` are real sops
encryptions with the test key (tests/keys/test-age-key.txt), so `connc render` can decrypt them.
Every file gets its own random data key stanza and ciphertexts, as real sops files do (identical
ones would rightly be reported as copied credentials, CONNC410).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import random
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEST_KEY_FILE = ROOT / "tests" / "keys" / "test-age-key.txt"
TEST_RECIPIENT = "age1ulne4xqhupvtrat0x2x000mqe98zezx4uax56ruvwmpq47d88phqehjy5j"
MARKER = ".connc-bench"  # marks a generated directory, so regenerating may delete it
RENDER_PIPELINE = "bench-render"
SOPS_VERSION = "3.11.0"

# Share of each type among the connections (weights, not percentages).
TYPE_WEIGHTS = {
    "container-registry": 20, "kubernetes": 16, "gitlab": 14, "github-app": 12, "git": 10,
    "packages": 10, "gitlab-self-hosted": 8, "codeup": 5, "bitbucket": 5,
}
AREAS = ("platform", "payments", "search", "mobile", "web", "data", "ml", "infra", "security",
         "identity", "billing", "growth", "checkout", "catalog", "logistics", "support",
         "analytics", "observability", "release", "storage")
APPS = ("api", "web", "worker", "etl", "mobile", "infra", "docs", "cli", "gateway", "batch")
FIRST = ("ada", "alan", "barbara", "brian", "claude", "donald", "edsger", "frances", "grace",
         "guido", "hedy", "ivan", "john", "ken", "leslie", "linus", "margaret", "niklaus",
         "radia", "rob", "shafi", "sophie", "tim", "tony", "vint", "whitfield", "yukihiro",
         "zhang", "katherine", "dennis")
LAST = ("lovelace", "turing", "liskov", "kernighan", "shannon", "knuth", "dijkstra", "allen",
        "hopper", "rossum", "lamarr", "sutherland")
B32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"  # bech32 alphabet of age keys


class Random(random.Random):
    """random.Random plus the value shapes a connection repository needs."""

    def b64(self, size: int, *, pad: bool = True) -> str:
        text = base64.b64encode(self.randbytes(size)).decode()
        return text if pad else text.rstrip("=")

    def enc(self, plaintext_size: int) -> str:
        """A value as sops writes it: AES256-GCM with a 32-byte iv and a 16-byte tag."""
        return (f"ENC[AES256_GCM,data:{self.b64(plaintext_size)},iv:{self.b64(32)},"
                f"tag:{self.b64(16)},type:str]")

    def age_recipient(self) -> str:
        return "age1" + "".join(self.choices(B32, k=58))

    def age_stanza(self) -> str:
        """An armored age file wrapping a 32-byte data key for one X25519 recipient."""
        header = (f"age-encryption.org/v1\n-> X25519 {self.b64(32, pad=False)}\n"
                  f"{self.b64(32, pad=False)}\n--- {self.b64(32, pad=False)}\n").encode()
        body = base64.b64encode(header + self.randbytes(16 + 32 + 16)).decode()
        lines = "\n".join(textwrap.wrap(body, 64))
        return f"-----BEGIN AGE ENCRYPTED FILE-----\n{lines}\n-----END AGE ENCRYPTED FILE-----"


# ---------------------------------------------------------------------------- YAML text

_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/@+:=-]*( [A-Za-z0-9._/@+=()-]+)*$")
_RESERVED = re.compile(r"^([-+]?[0-9][0-9_.eE+-]*|true|false|yes|no|on|off|y|n|null|~)$",
                       re.IGNORECASE)


def scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _PLAIN.match(text) and ": " not in text and not _RESERVED.match(text):
        return text
    return json.dumps(text)  # a JSON string is a valid double-quoted YAML scalar


def emit(mapping: dict[str, Any], step: int, indent: int = 0) -> list[str]:
    """Block-style YAML lines; sops indents by 4 (and indents sequences), people by 2."""
    pad, lines = " " * indent, []
    for key, value in mapping.items():
        if isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            lines += emit(value, step, indent + step)
        elif isinstance(value, list) and value:
            lines.append(f"{pad}{key}:")
            dash = " " * (indent + step) + "- "
            for item in value:
                if isinstance(item, dict):
                    nested = emit(item, step, indent + step + 2)
                    lines += [dash + nested[0].lstrip(), *nested[1:]]
                else:
                    lines.append(dash + scalar(item))
        else:
            lines.append(f"{pad}{key}: {'[]' if value == [] else scalar(value)}")
    return lines


def sops_block(rnd: Random, modified: dt.datetime, recipients: list[str]) -> str:
    stanzas = "".join(f"        - recipient: {recipient}\n          enc: |\n"
                      f"{textwrap.indent(rnd.age_stanza(), ' ' * 12)}\n"
                      for recipient in recipients)
    return (f"sops:\n    age:\n{stanzas}"
            f"    lastmodified: \"{modified:%Y-%m-%dT%H:%M:%SZ}\"\n"
            f"    mac: {rnd.enc(128)}\n"  # sops' MAC: a hex SHA-512, encrypted
            f"    encrypted_regex: ^credential$\n    mac_only_encrypted: true\n"
            f"    version: {SOPS_VERSION}\n")


# ---------------------------------------------------------------------------- principals


def make_members(rnd: Random) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """members.yaml (300 users, 40 teams) and each user's teams."""
    names = [f"{first}.{last}" for first in FIRST for last in LAST]
    rnd.shuffle(names)
    users = sorted(names[:300])
    teams = [*AREAS, *(f"{area}-oncall" for area in AREAS)]
    team_members: dict[str, list[str]] = {team: [] for team in teams}
    for index, user in enumerate(users):
        # Round-robin first, so every team has members and every user a team.
        for team in {teams[index % len(teams)], *rnd.sample(teams, rnd.randint(0, 2))}:
            team_members[team].append(user)
    document = {
        "apiVersion": "connc/v1",
        "kind": "Members",
        "users": {u: {"name": u.replace(".", " ").title(), "recipients": [rnd.age_recipient()]}
                  for u in users},
        "teams": {t: {"members": sorted(m), "recipients": [rnd.age_recipient()]}
                  for t, m in team_members.items()},
    }
    teams_of: dict[str, list[str]] = {u: [] for u in users}
    for team, members in team_members.items():
        for user in members:
            teams_of[user].append(team)
    return document, teams_of


def make_pipeline_stubs(rnd: Random, count: int,
                        teams_of: dict[str, list[str]]) -> list[dict[str, Any]]:
    users = sorted(teams_of)
    stubs = []
    for index in range(count):
        owner = rnd.choice(users)
        teams = sorted(rnd.sample(teams_of[owner], min(len(teams_of[owner]), rnd.randint(1, 2))))
        pipeline_id = f"{rnd.choice(AREAS)}-{rnd.choice(APPS)}-{index:05d}"
        stubs.append({"id": pipeline_id, "owner": owner, "teams": teams,
                      "recipients": [rnd.age_recipient()] if rnd.random() < 0.2 else []})
    return stubs


# ---------------------------------------------------------------------------- connections


def ca_pool(count: int) -> list[str]:
    """Base64 PEM CA certificates (real ones: validate parses certificateAuthorityData)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    pool = []
    for index in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"kubernetes-ca-{index}")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        pool.append(base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode())
    return pool


def spec_and_credential(rnd: Random, kind: str, area: str, index: int,
                        cas: list[str]) -> tuple[dict[str, Any], dict[str, int]]:
    """The plaintext spec and the credential field -> plaintext size (what sops encrypts)."""
    host = f"{area}.corp.example.com"
    if kind == "github-app":
        spec: dict[str, Any] = {"type": kind}
        if rnd.random() < 0.2:  # GitHub Enterprise Server
            spec |= {"url": f"https://github.{host}", "apiUrl": f"https://github.{host}/api/v3"}
        spec |= {"clientId": "Iv23li" + rnd.b64(10, pad=False).replace("+", "x").replace("/", "y"),
                 "installationId": rnd.randint(10_000, 90_000_000)}
        return spec, {"privateKey": 1679}  # RSA 2048 PEM
    if kind in ("gitlab", "gitlab-self-hosted"):
        base = "https://gitlab.com" if kind == "gitlab" else f"https://gitlab.{host}"
        return {"type": kind, "url": f"{base}/{area}"}, {"token": 26}
    if kind == "codeup":
        return ({"type": kind, "url": f"https://codeup.aliyun.com/{area}-{index}"},
                {"username": 18, "password": 32})
    if kind == "bitbucket":
        spec = {"type": kind, "url": f"https://bitbucket.org/{area}-{index}"}
        return spec, {"token": 180} if rnd.random() < 0.5 else {"username": 12, "password": 32}
    if kind == "git":
        if rnd.random() < 0.3:
            known = f"git.{host} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{rnd.b64(24)}"
            return ({"type": kind, "url": f"ssh://git.{host}/{area}-{index}",
                     "knownHosts": known}, {"sshPrivateKey": 411})
        return {"type": kind, "url": f"https://git.{host}/{area}-{index}/"}, \
            {"username": 12, "password": 40}
    if kind == "container-registry":
        registry = rnd.choice([f"registry.{host}", f"registry.{host}:5000", "ghcr.io",
                               f"{area}{index}.azurecr.io"])
        return {"type": kind, "registry": registry}, {"username": 16, "password": 40}
    if kind == "kubernetes":
        spec = {"type": kind, "server": f"https://k8s-{index}.{host}:6443",
                "certificateAuthorityData": rnd.choice(cas),
                "namespace": f"{area}-{rnd.choice(APPS)}"}
        if rnd.random() < 0.7:
            return spec, {"token": 950}  # a service account JWT
        return spec, {"clientCertificateData": 1100, "clientKeyData": 300}
    fmt = rnd.choice(["maven", "npm", "pypi"])
    spec = {"type": kind, "format": fmt, "url": f"https://packages.{host}/{fmt}/{area}/"}
    if fmt == "maven":
        spec["repositoryId"] = f"{area}-releases"
    return spec, {"token": 36} if fmt == "npm" else {"username": 12, "password": 40}


def custom_scopes(rnd: Random, leads: list[str], users: list[str], teams: list[str],
                  pipelines: list[dict[str, Any]]) -> dict[str, list[list[str]]]:
    """Each lead's three custom scopes: the member lists their connections are shared with."""
    scopes: dict[str, list[list[str]]] = {}
    for lead in leads:
        scopes[lead] = []
        for _ in range(3):
            members = set()
            for _ in range(rnd.randint(1, 4)):
                pick = rnd.random()
                if pick < 0.6:
                    members.add(f"team:{rnd.choice(teams)}")
                elif pick < 0.9:
                    members.add(f"user:{rnd.choice(users)}")
                else:
                    members.add(f"pipeline:{rnd.choice(pipelines)['id']}")
            scopes[lead].append(sorted(members))
    return scopes


def pick_scope(rnd: Random, scopes: dict[str, list[list[str]]]) -> tuple[str, dict[str, Any]]:
    owner = rnd.choice(sorted(scopes))
    roll = rnd.random()
    if roll < 0.2:
        return owner, {"visibility": "public"}
    if roll < 0.5:
        return owner, {"visibility": "private"}
    return owner, {"visibility": "custom", "members": rnd.choice(scopes[owner])}


class Keys:
    """Who holds which key, and which keys a file is encrypted to: what `connc keys sync`
    derives — the admin key, the owner's keys, and the runner keys of the pipelines that use
    it (a pipeline's own recipients, else its teams' own), so that the safety and liveness
    checks (CONNC408, CONNC409, CONNC414) find nothing."""

    def __init__(self, members: dict[str, Any], pipelines: list[dict[str, Any]]) -> None:
        self.users = {u: v["recipients"] for u, v in members["users"].items()}
        teams = {t: v["recipients"] for t, v in members["teams"].items()}
        self.runner = {stub["id"]: stub["recipients"] or [k for team in stub["teams"]
                                                          for k in teams[team]]
                       for stub in pipelines}

    def for_connection(self, owner: str, users: list[str]) -> tuple[str, ...]:
        keys = {TEST_RECIPIENT, *self.users[owner]}
        keys.update(k for pipeline in users for k in self.runner[pipeline])
        return tuple(sorted(keys))


def connection_document(connection_id: str, owner: str, scope: dict[str, Any],
                        spec: dict[str, Any], rnd: Random) -> dict[str, Any]:
    metadata: dict[str, Any] = {"id": connection_id,
                                "name": f"{spec['type']} {connection_id.split('-', 1)[1]}",
                                "owner": owner}
    if rnd.random() < 0.3:
        metadata["description"] = f"Used by the {rnd.choice(APPS)} builds"
    if rnd.random() < 0.4:  # sops rewrites a date as a timestamp
        metadata["expiresAt"] = f"{rnd.randint(2031, 2035)}-{rnd.randint(1, 12):02d}-01T00:00:00Z"
    return {"apiVersion": "connc/v1", "kind": "Connection", "metadata": metadata,
            "scope": scope, "spec": spec}


def write_synthetic(out: Path, document: dict[str, Any], credential: dict[str, int],
                    rnd: Random, recipients: tuple[str, ...]) -> None:
    modified = dt.datetime(2025, 1, 1) + dt.timedelta(seconds=rnd.randint(0, 60_000_000))
    lines = emit(document, 4)
    lines.append("credential:")
    lines += [f"    {name}: {rnd.enc(size)}" for name, size in credential.items()]
    lines.append(f"    connc-seal: {rnd.enc(400)}")  # a seal's size; as fake as the rest
    path = out / "connections.d" / f"{document['metadata']['id']}.sops.yaml"
    path.write_text("\n".join(lines) + "\n" + sops_block(rnd, modified, list(recipients)))


# ---------------------------------------------------------------------------- bench-render


def render_connections(owner: str, team: str, cas: list[str]) -> list[dict[str, Any]]:
    """The five connections of pipeline bench-render, as plaintext (fake) documents."""
    host = "bench.corp.example.com"

    def document(cid: str, scope: dict[str, Any], spec: dict[str, Any],
                 credential: dict[str, str]) -> dict[str, Any]:
        return {"apiVersion": "connc/v1", "kind": "Connection",
                "metadata": {"id": cid, "name": f"bench {spec['type']}", "owner": owner},
                "scope": scope, "spec": spec, "credential": credential}

    return [
        document("bench-gitlab", {"visibility": "private"},
                 {"type": "gitlab", "url": "https://gitlab.com/bench"},
                 {"token": "fake-gitlab-token-0123456789"}),
        document("bench-git", {"visibility": "custom", "members": [f"team:{team}"]},
                 {"type": "git", "url": f"https://git.{host}/org-a/"},
                 {"username": "bench-bot", "password": "fake-git-password-0123456789"}),
        document("bench-registry", {"visibility": "public"},
                 {"type": "container-registry", "registry": f"registry.{host}:5000"},
                 {"username": "bench-pusher", "password": "fake-registry-password-0123"}),
        document("bench-kube", {"visibility": "custom",
                                "members": [f"pipeline:{RENDER_PIPELINE}"]},
                 {"type": "kubernetes", "server": f"https://k8s.{host}:6443",
                  "certificateAuthorityData": cas[0], "namespace": "bench"},
                 {"token": "fake-kubernetes-service-account-token-0123456789"}),
        document("bench-npm", {"visibility": "private"},
                 {"type": "packages", "format": "npm", "url": f"https://npm.{host}/"},
                 {"token": "fake-npm-token-0123456789"}),
    ]


def write_real(out: Path, documents: list[dict[str, Any]]) -> None:
    from connc.sops.binary import executable

    env = {**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1"}
    from connc import seal

    for document in documents:
        relpath = f"connections.d/{document['metadata']['id']}.sops.yaml"
        # Sealed, as connc new writes a credential: render verifies it (requireSeals is on).
        view = seal.view_of_plaintext(document)
        document = {**document, "credential": {**document["credential"],
                                               seal.SEAL_FIELD: seal.encode(view)}}
        (out / relpath).write_text("\n".join(emit(document, 4)) + "\n")
        subprocess.run([executable(), "encrypt", "--in-place", relpath], cwd=out, env=env,
                       check=True, stdout=subprocess.DEVNULL)


# ---------------------------------------------------------------------------- the repository


def prepare(out: Path) -> None:
    if out.exists():
        if not (out / MARKER).exists() and any(out.iterdir()):
            sys.exit(f"{out} exists and was not made by bench/generate.py; choose another --out")
        shutil.rmtree(out)
    (out / "connections.d").mkdir(parents=True)
    (out / "pipelines.d").mkdir()


def generate(count: int, out: Path, seed: int = 1) -> Path:
    """Write a repository of `count` connections and count/5 pipelines into `out`."""
    rnd = Random(seed)
    prepare(out)
    (out / MARKER).write_text(json.dumps({"connections": count, "seed": seed}) + "\n")
    # The test key is the break-glass admin key: every file is encrypted to it too.
    (out / "connc.yaml").write_text(
        f"apiVersion: connc/v1\nkind: Config\nadminRecipients: [{TEST_RECIPIENT}]\n"
        "requireSeals: true\n")
    members, teams_of = make_members(rnd)
    users, teams = sorted(teams_of), sorted(members["teams"])
    render_owner = users[0]
    # bench-render's owner and team hold the test key: its connections are real sops files,
    # encrypted to a key whose private half the benchmark has.
    members["users"][render_owner]["recipients"] = [TEST_RECIPIENT]
    members["teams"][teams_of[render_owner][0]]["recipients"] = [TEST_RECIPIENT]
    (out / "members.yaml").write_text("\n".join(emit(members, 2)) + "\n")

    stubs = make_pipeline_stubs(rnd, max(1, count // 5) - 1, teams_of)
    stubs.append({"id": RENDER_PIPELINE, "owner": render_owner,
                  "teams": teams_of[render_owner][:1], "recipients": []})
    # Its team's own key is the test key too: bench-render's runner key.
    leads = sorted(rnd.sample(users[1:], 40))
    scopes = custom_scopes(rnd, leads, users, teams, stubs[:-1])
    cas = ca_pool(16)
    real = render_connections(render_owner, teams_of[render_owner][0], cas)
    planned = plan_connections(rnd, count - len(real), scopes, cas)
    usable_by: dict[str, list[str]] = {"public": []}
    for connection_id, owner, scope, _spec, _credential in planned:
        public = ["public"] if scope["visibility"] == "public" else []
        for principal in [*public, f"user:{owner}", *scope.get("members", [])]:
            usable_by.setdefault(principal, []).append(connection_id)
    users_of: dict[str, list[str]] = {}
    for stub in stubs[:-1]:
        stub["uses"] = pick_uses(rnd, stub, usable_by)
        for use in stub["uses"]:
            users_of.setdefault(use["connection"], []).append(stub["id"])
    stubs[-1]["uses"] = [{"connection": d["metadata"]["id"]} for d in real]
    encrypted_to = write_connections(out, rnd, planned, Keys(members, stubs), users_of)
    (out / ".sops.yaml").write_text(sops_config(encrypted_to))
    write_real(out, real)
    for stub in stubs:
        write_pipeline(out, stub, stub["uses"])
    return out


Planned = tuple[str, str, dict[str, Any], dict[str, Any], dict[str, int]]


def plan_connections(rnd: Random, count: int, scopes: dict[str, list[list[str]]],
                     cas: list[str]) -> list[Planned]:
    """The synthetic connections: (id, owner, scope, spec, credential field sizes)."""
    planned = []
    kinds = rnd.choices(list(TYPE_WEIGHTS), weights=list(TYPE_WEIGHTS.values()), k=count)
    for index, kind in enumerate(kinds):
        area = rnd.choice(AREAS)
        connection_id = f"{kind.split('-')[0]}-{area}-{index:05d}"
        owner, scope = pick_scope(rnd, scopes)
        spec, credential = spec_and_credential(rnd, kind, area, index, cas)
        planned.append((connection_id, owner, scope, spec, credential))
    return planned


def write_connections(out: Path, rnd: Random, planned: list[Planned], keys: Keys,
                      users_of: dict[str, list[str]]) -> dict[tuple[str, ...], list[str]]:
    """Write the synthetic connections; returns the ids encrypted to each set of keys."""
    encrypted_to: dict[tuple[str, ...], list[str]] = {}
    for connection_id, owner, scope, spec, credential in planned:
        document = connection_document(connection_id, owner, scope, spec, rnd)
        recipients = keys.for_connection(owner, users_of.get(connection_id, []))
        write_synthetic(out, document, credential, rnd, recipients)
        encrypted_to.setdefault(recipients, []).append(connection_id)
    return encrypted_to


def sops_config(encrypted_to: dict[tuple[str, ...], list[str]]) -> str:
    """One creation rule per set of keys, naming its files; the admin key alone (public
    connections, and bench-render's, encrypted by sops itself) is the final catch-all."""
    rules = ["creation_rules:"]
    settings = "    encrypted_regex: ^credential$\n    mac_only_encrypted: true\n"
    for recipients, ids in encrypted_to.items():
        if recipients != (TEST_RECIPIENT,):
            rules.append(f"  - path_regex: ^connections\\.d/({'|'.join(ids)})\\.sops\\.yaml$\n"
                         f"{settings}    age: {','.join(recipients)}")
    rules.append(f"  - path_regex: ^connections\\.d/.*\\.sops\\.yaml$\n{settings}"
                 f"    age: {TEST_RECIPIENT}")
    return "\n".join(rules) + "\n"


def pick_uses(rnd: Random, stub: dict[str, Any],
              usable_by: dict[str, list[str]]) -> list[dict[str, Any]]:
    principals = ["public", f"user:{stub['owner']}", f"pipeline:{stub['id']}",
                  *(f"team:{t}" for t in stub["teams"])]
    candidates = sorted({c for p in principals for c in usable_by.get(p, [])})
    picked = rnd.sample(candidates, min(len(candidates), rnd.randint(1, 6)))
    uses: list[dict[str, Any]] = [{"connection": c} for c in picked]
    for use in uses:
        if use["connection"].startswith("github-") and rnd.random() < 0.5:
            use["repositories"] = [rnd.choice(APPS)]
            use["permissions"] = {"contents": "read"}
    return uses


def write_pipeline(out: Path, stub: dict[str, Any], uses: list[dict[str, Any]]) -> None:
    metadata: dict[str, Any] = {"id": stub["id"], "owner": stub["owner"], "teams": stub["teams"]}
    if stub["recipients"]:
        metadata["recipients"] = stub["recipients"]
    document = {"apiVersion": "connc/v1", "kind": "Pipeline", "metadata": metadata, "uses": uses}
    (out / "pipelines.d" / f"{stub['id']}.yaml").write_text("\n".join(emit(document, 2)) + "\n")


def default_out(count: int) -> Path:
    return ROOT / "bench" / "out" / f"repo-{count}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--connections", type=int, default=1000)
    parser.add_argument("--out", type=Path, help="default: bench/out/repo-N")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-check", action="store_true", help="skip `connc validate`")
    args = parser.parse_args()
    if args.connections < 10:
        parser.error("generate at least 10 connections")
    started = time.perf_counter()
    out = generate(args.connections, args.out or default_out(args.connections), args.seed)
    print(f"wrote {out} in {time.perf_counter() - started:.1f}s")
    if not args.no_check:
        connc = Path(sys.executable).with_name("connc")
        result = subprocess.run([str(connc), "validate", "--strict", "--repo", str(out)],
                                check=False)
        sys.exit(result.returncode)


if __name__ == "__main__":
    main()
