"""`known-hosts-pin-own-host` (CONNC110): an ssh connection's knownHosts pins its own host only.

One rule, applied by the model (`connc validate`) and, named in the generated JSON Schema, by
render's schema checker: both are asked here about the same specs and must agree.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from connc.schema import check as schemacheck
from connc.schema import models, policy

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
BLOB = KEY.split()[1]
SPEC: TypeAdapter[object] = TypeAdapter(models.GitSpec)


def _hashed(name: str, salt: bytes = b"0123456789abcdefghij") -> str:
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def _kind(url: str, known_hosts: str) -> str | None:
    """The rule's verdict, after checking that the model and render's checker agree on it."""
    spec = {"type": "git", "url": url, "knownHosts": known_hosts}
    try:
        policy.known_hosts_pin_own_host(spec)
        kind = None
    except policy.Violation as violation:
        kind = violation.kind
        assert BLOB not in violation.message  # the host field at most, never a key
    try:
        SPEC.validate_python(spec)
        model_ok = True
    except ValidationError:
        model_ok = False
    schema = schemacheck.load("connection")
    try:
        schemacheck.check(spec, {"$defs": schema["$defs"], "$ref": "#/$defs/GitSpec"})
        checker_ok = True
    except schemacheck.Problem:
        checker_ok = False
    assert model_ok == checker_ok == (kind is None)
    return kind


@pytest.mark.parametrize(("url", "known_hosts"), [
    ("ssh://git@git.example.com/org", f"git.example.com {KEY}"),
    ("ssh://git@Git.Example.com/org", f"GIT.EXAMPLE.COM {KEY}"),  # host names ignore case
    ("ssh://git@git.example.com:22/org", f"git.example.com {KEY}"),
    ("ssh://git@git.example.com:2222/org", f"[git.example.com]:2222 {KEY}"),
    ("ssh://git@git.example.com:2222/org", f"[Git.example.com]:2222,[git.example.com]:2222 {KEY}"),
    ("ssh://git@git.example.com/org", f"# a comment\n\ngit.example.com {KEY}\n"),
    ("ssh://git@git.example.com/org", f"@cert-authority git.example.com {KEY}"),
    ("ssh://git@git.example.com/org", f"git.example.com {KEY}\n@revoked git.example.com {KEY}"),
    ("ssh://git@[::1]:2222/org", f"[::1]:2222 {KEY}"),
    ("ssh://git@git.example.com/org", f"{_hashed('git.example.com')} {KEY}"),
    ("ssh://git@git.example.com:2222/org", f"{_hashed('[git.example.com]:2222')} {KEY}"),
    ("https://git.example.com/org", f"elsewhere.example {KEY}"),  # not ssh: ssh never reads it
])
def test_lines_for_the_own_host_pass(url: str, known_hosts: str) -> None:
    assert _kind(url, known_hosts) is None


@pytest.mark.parametrize(("url", "known_hosts", "line", "shown"), [
    ("ssh://git@git.example.com/org", f"git.example.com {KEY}\ngitlab.com {KEY}", 2,
     "`gitlab.com`"),
    ("ssh://git@git.example.com/org", f"git.example.com,evil.example {KEY}", 1, "`evil.example`"),
    ("ssh://git@git.example.com/org", f"git.example.com {KEY}\n@cert-authority * {KEY}", 2,
     "`@cert-authority` line 2: `*`"),
    ("ssh://git@git.example.com/org", f"@cert-authority *.example.com {KEY}", 1,
     "`*.example.com`"),
    ("ssh://git@git.example.com/org", f"git.example.co? {KEY}", 1, "wildcard"),
    ("ssh://git@git.example.com/org", f"!evil.example,git.example.com {KEY}", 1, "negated"),
    ("ssh://git@git.example.com/org", f"@revoked * {KEY}\ngit.example.com {KEY}", 1, "`*`"),
    # another port is another server: ssh looks up `[host]:port` unless the port is 22
    ("ssh://git@git.example.com:2222/org", f"git.example.com {KEY}", 1, "`git.example.com`"),
    ("ssh://git@git.example.com/org", f"[git.example.com]:2222 {KEY}", 1, "not this connection's"),
    ("ssh://git@git.example.com/org", f"{_hashed('gitlab.com')} {KEY}", 1, "hashed host name"),
    ("ssh://git@git.example.com:2222/org", f"{_hashed('git.example.com')} {KEY}", 1, "hashed"),
    ("ssh://git@git.example.com/org", f"|1|not|base64! {KEY}", 1, "hashed host name"),
])
def test_lines_for_any_other_host_are_refused(url: str, known_hosts: str, line: int,
                                              shown: str) -> None:
    assert _kind(url, known_hosts) == "known_hosts_foreign"
    with pytest.raises(policy.Violation) as refused:
        policy.known_hosts_pin_own_host({"url": url, "knownHosts": known_hosts})
    assert f"line {line}:" in refused.value.message
    assert shown in refused.value.message


def test_other_malformed_or_empty_pins() -> None:
    url = "ssh://git@git.example.com/org"
    assert _kind(url, f"@bogus git.example.com {KEY}") == "known_hosts_malformed"
    assert _kind(url, "git.example.com ssh-ed25519") == "known_hosts_malformed"
    assert _kind(url, "# only a comment") == "missing"
    assert _kind(url, f"@revoked git.example.com {KEY}") == "missing"  # pins nothing


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen is not installed")
def test_entries_hashed_by_ssh_keygen(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[git.example.com]:2222 {KEY}\ngitlab.com {KEY}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(known_hosts)], check=True, capture_output=True)
    own, other = known_hosts.read_text().splitlines()
    assert own.startswith("|1|") and other.startswith("|1|")
    assert _kind("ssh://git@git.example.com:2222/org", own) is None
    assert _kind("ssh://git@git.example.com:2222/org", f"{own}\n{other}") == "known_hosts_foreign"
