"""URLs have one spelling: every tool takes a connection's URL for the same host, port, path.

The rule is `schema.policy` (`check_url`, `check_registry`), which validate's models and
render's schema checker both run, so a URL validate accepts is one render accepts and writes,
and one it refuses is refused by both, at its line, with CONNC107.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connc.acceptance import schema_model
from connc.documents import parse
from connc.schema import policy
from kit import run
from kit.build import connection, make_repo, pipeline

ACCEPTED = [
    "https://git.example.com", "https://git.example.com/org-a/", "https://GitLab.Example.com/x",
    "https://xn--bcher-kva.example/", "https://192.0.2.1:8443/a", "https://[2001:db8::1]/",
    "https://[::ffff:127.0.0.1]/", "https://git.example.com/a@b/", "https://h.example/x;y=1/",
    "https://h.example/a%20b/", "https://h.example/caf%C3%A9/", "https://h.example/a%3Ab/",
    "https://h.example:443/", "https://h.example/.well-known/x", "https://h.example/a..b/",
    "http://localhost:8080/", "http://127.0.0.1/", "http://[::1]:5000/",
    "ssh://git@git.example.com:2222/org/repo.git",
]
REFUSED = {
    # control characters once a tool decodes the path
    "https://git.example.com/org%0a/repo.git": "control character",
    "https://git.example.com/org%0D%0Ax/": "control character",
    "https://git.example.com/org%00/": "control character",
    "https://git.example.com/%7F/": "control character",
    # another segment, another decoding, another spelling
    "https://git.example.com/org%2F..%2Fother/": "`/`",
    "https://git.example.com/a%5Cb/": "`\\`",
    "https://git.example.com/a%252F/": "`%`",
    "https://git.example.com/%61dmin/": "which a URL writes as it is",
    "https://git.example.com/%2e%2e/admin/": "which a URL writes as it is",
    "https://git.example.com/a%zz/": "does not start a percent-escape",
    "https://git.example.com/a%": "does not start a percent-escape",
    "https://git.example.com/org/../other/": "path segment",
    "https://git.example.com/./org/": "path segment",
    "https://git.example.com/org//repo": "empty path segment",
    # hosts that tools read differently
    "https://99999999999999999999999/": "numeric host",
    "https://" + "9" * 5000 + "/": "host name",
    "https://4294967296/": "numeric host",
    "https://0x7f000001/": "numeric host",
    "https://127.1/": "numeric host",
    "https://1.2.3.4.5/": "numeric host",
    "https://010.0.0.1/": "numeric host",
    "https://bücher.example/": "ASCII",
    "https://gitlab\u3002example.com/": "ASCII",
    "https://git.example.com/\u200b/": "ASCII",
    "https://git.example.com/a\\b/": "backslash",
    "https://git.example.com\\@evil.example/": "backslash",
    "https://git.example.com./": "host name",
    "https://git_lab.example.com/": "host name",
    "https://-git.example.com/": "host name",
    "https://git..example.com/": "host name",
    "https://%67it.example.com/": "host name",
    "https://[fe80::1%25eth0]/": "zone",
    "https://git.example.com:0/": "port",
    "https://git.example.com:00443/": "port",
    "https://git.example.com:/": "port",
    # credentials and the rest of a URL, even empty
    "https://:@git.example.com/": "credentials",
    "https://@git.example.com/": "credentials",
    "ssh://-oProxyCommand=x@git.example.com/r.git": "credentials",
    "ssh://git:pw@git.example.com/r.git": "credentials",
    "https://git.example.com/?": "query",
    "https://git.example.com/#": "query",
}
REGISTRIES_REFUSED = ["registry.example.com:0", "registry.example.com:99999", "-registry.example",
                      "registry..example", "registry.example/../x", "registry.example//x",
                      "0x7f000001:5000", "registry.example.:5000", "https://index.docker.io/v1/%0a"]


@pytest.mark.parametrize("url", ACCEPTED)
def test_one_spelling_is_accepted(url: str) -> None:
    policy.check_url(url, ("https", "ssh"))


@pytest.mark.parametrize(("url", "why"), REFUSED.items())
def test_another_reading_is_refused(url: str, why: str) -> None:
    with pytest.raises(policy.Violation) as refused:
        policy.check_url(url, ("https", "ssh"))
    assert refused.value.kind in policy.URL_VIOLATIONS
    assert why in refused.value.message
    # Named, never quoted: a URL may hold a pasted secret.
    assert url not in refused.value.message and "99999" not in refused.value.message


@pytest.mark.parametrize("registry", REGISTRIES_REFUSED)
def test_registries_have_one_spelling_too(registry: str) -> None:
    with pytest.raises(policy.Violation):
        policy.check_registry(registry)
    policy.check_registry("registry.example.com:5000/team")


@given(st.text(max_size=60))
def test_any_text_is_accepted_or_refused_never_a_crash(text: str) -> None:
    for value in (text, f"https://{text}", f"https://h.example/{text}"):
        try:
            policy.check_url(value, ("https", "ssh"))
            policy.check_registry(value)
        except policy.Violation:
            pass


def test_render_refuses_with_validates_code_and_place() -> None:
    document = parse("apiVersion: connc/v1\nkind: Connection\nmetadata: {id: c, name: c, "
                     "owner: alice}\nscope: {visibility: private}\nspec:\n  type: git\n"
                     "  url: https://git.example.com/org%0a/r.git\ncredential: {token: x}\n")
    _data, [found] = schema_model(document, "connections.d/c.sops.yaml", "Connection")
    assert (found.code, found.line, found.column) == ("CONNC107", 7, 8)


@pytest.mark.parametrize(("spec", "field"), [
    ({"type": "git", "url": "https://git.example.com/org%0a/repo.git"}, "url"),
    ({"type": "packages", "format": "pypi", "url": "https://" + "9" * 4400 + "/simple/"}, "url"),
    ({"type": "packages", "format": "npm", "url": "https://2130706433/npm/"}, "url"),
])
def test_validate_and_render_refuse_it_at_its_line(tmp_path: Path, spec: dict[str, str],
                                                   field: str) -> None:
    # Before: validate clean, and render refused without naming the connection (a newline
    # decoded into the git credential helper) or exited 3 (int() of 4,400 digits).
    credential = {"username": "u", "password": "p"}
    root = make_repo(tmp_path / "repo", connections={
        "odd": connection("odd", type_=spec["type"], spec=spec, credential=credential)},
        pipelines={"deploy": pipeline("deploy", "odd")})

    def connc(*args: str) -> subprocess.CompletedProcess[str]:
        return run.connc(*args, "--repo", root, timeout=60)

    lines = (root / "connections.d/odd.sops.yaml").read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if text.lstrip().startswith(f"{field}:"))
    where = f"connections.d/odd.sops.yaml:{line}:"
    validated = connc("validate")
    assert validated.returncode == 1
    assert where in validated.stdout
    assert f"CONNC107 `spec.{field}`" in validated.stdout
    rendered = connc("render", "deploy", "--out", str(tmp_path / "out"))
    assert rendered.returncode == 1, rendered.stderr
    assert where in rendered.stderr
    assert f"CONNC107 `spec.{field}`" in rendered.stderr
    assert not (tmp_path / "out").exists()
