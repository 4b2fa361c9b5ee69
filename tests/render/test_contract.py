"""One contract per credential field: `secret set`, `validate --decrypt`, `render` and
`check` accept and refuse exactly the same values, with the same message."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.build import connection, key_env, make_repo, pipeline
from kit.run import connc

CASES = [
    pytest.param("container-registry", {"registry": "registry.example.com"},
                 {"username": "ci:bot", "password": "fake-password"}, "username", "ci:bot",
                 "contains ':'", id="username-with-colon"),
    pytest.param("packages", {"format": "maven", "url": "https://maven.example.com/r",
                              "repositoryId": "r"},
                 {"username": "ci", "password": "${env.PASSWORD}"}, "password", "${env.X}",
                 "Maven would interpolate", id="maven-interpolation"),
    pytest.param("packages", {"format": "pypi", "url": "https://pypi.example.com/simple/"},
                 {"username": "ci", "password": " padded "}, "password", " padded ",
                 "starts or ends with spaces", id="pypi-padding"),
    pytest.param("packages", {"format": "npm", "url": "https://npm.example.com/"},
                 {"token": "true"}, "token", "null", "npm reads as a value",
                 id="npm-keyword"),
    pytest.param("packages", {"format": "npm", "url": "https://npm.example.com/"},
                 {"token": "tok "}, "token", " tok", "starts or ends with spaces",
                 id="npm-padding"),
    pytest.param("gitlab", {}, {"token": "line\x1bbreak"}, "token", "esc\x1bape",
                 "control character U+001B", id="control-character"),
]


@pytest.mark.parametrize(("connection_type", "spec", "credential", "field", "value", "phrase"),
                         CASES)
def test_every_command_refuses_the_same_value_the_same_way(
        tmp_path: Path, connection_type: str, spec: dict[str, str], credential: dict[str, str],
        field: str, value: str, phrase: str) -> None:
    root = make_repo(tmp_path / "repo", connections={"c": connection(
        "c", type_=connection_type, spec=spec, credential=credential)},
        pipelines={"p": pipeline("p", "c")})
    rendered = connc("render", "p", "--repo", root, "--out", tmp_path / "out", timeout=60)
    validated = connc("validate", "--repo", root, "--decrypt", timeout=60)
    checked = connc("check", "c", "--repo", root, timeout=60)
    assert rendered.returncode == 1 and validated.returncode == 1 and checked.returncode == 1
    message = next(line for line in validated.stdout.splitlines() if phrase in line)
    message = message.split(" CONNC", 1)[1].split(" ", 1)[1]  # the words after the code
    assert message in rendered.stderr and message in checked.stdout
    assert not (tmp_path / "out").exists()
    # secret set refuses the value with the same words, and writes nothing.
    before = (root / "connections.d/c.sops.yaml").read_bytes()
    refused = connc("secret", "set", "c", field, "--repo", root, input=value, env=key_env(),
                    timeout=60)
    assert refused.returncode == 1 and message in refused.stderr
    assert (root / "connections.d/c.sops.yaml").read_bytes() == before
    for ran in (rendered, validated, checked, refused):
        assert value not in ran.stdout + ran.stderr
