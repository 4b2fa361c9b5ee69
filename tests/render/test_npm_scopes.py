"""npm scoped registries (`spec.npmScopes`): `@scope:registry=URL` in the rendered npmrc, so a
scope's packages come from its registry with its credential and every other package from the
default one; checked keyless by validate and again by render; real npm, a fake registry."""

# ruff: noqa: F811  -- pytest injects the imported fixtures by parameter name.
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from connc.validate.run import validate
from kit.build import connection, make_repo, pipeline, sourced
from kit.run import connc
from kit.servers._net import clean_env
from kit.servers.npm_registry import PACKAGE, NpmRegistry, Scope, npm_registry  # noqa: F401

NPM = shutil.which("npm")
TOKENS = {"acme": "npm_acme-scoped-token-1", "public": "npm_default-token-2"}


def npm_connection(conn_id: str, url: str, **spec: Any) -> dict[str, Any]:
    return connection(conn_id, type_="packages", spec={"format": "npm", "url": url, **spec},
                      credential={"token": TOKENS.get(conn_id, "npm_other-token-3")})


@pytest.mark.skipif(NPM is None, reason="npm is not installed")
@pytest.mark.servers
def test_a_scope_is_fetched_from_its_registry_and_the_rest_from_the_default(
        npm_registry: NpmRegistry, tmp_path: Path) -> None:
    npm_registry.add(Scope("/acme/", "acme-reader", token=TOKENS["acme"]))
    npm_registry.add(Scope("/public/", "ci-reader", token=TOKENS["public"]))
    root = make_repo(tmp_path / "repo", connections={
        "acme": npm_connection("acme", npm_registry.url(prefix="/acme/"),
                               npmScopes=["@acme", "@acme-tools"]),
        "public": npm_connection("public", npm_registry.url(prefix="/public/")),
    }, pipelines={"ci": pipeline("ci", "acme", "public")})
    out = tmp_path / "out"
    proc = connc("render", "ci", "--repo", root, "--out", out, timeout=60)
    assert proc.returncode == 0, proc.stderr
    npmrc = (out / "npm" / "npmrc").read_text()
    assert f"\nregistry=\"{npm_registry.url(prefix='/public/')}\"\n" in npmrc
    assert f"\n@acme:registry=\"{npm_registry.url(prefix='/acme/')}\"\n" in npmrc
    assert f"\n@acme-tools:registry=\"{npm_registry.url(prefix='/acme/')}\"\n" in npmrc
    home = tmp_path / "npm-home"
    home.mkdir()
    (home / "global-npmrc").write_text("")
    env = clean_env(home, NPM_CONFIG_GLOBALCONFIG=str(home / "global-npmrc"),
                    NPM_CONFIG_CACHE=str(home / "cache"), NPM_CONFIG_UPDATE_NOTIFIER="false")
    for package in (f"@acme/{PACKAGE}", f"@acme-tools/{PACKAGE}", PACKAGE):
        ran = sourced(out, [str(NPM), "view", package, "version"], env, cwd=home)
        assert not any(token in ran.stdout + ran.stderr for token in TOKENS.values())
        assert (ran.returncode, ran.stdout.strip()) == (0, "1.0.0"), ran.stderr
    assert sorted(npm_registry.accepted("/acme/")) == [f"/acme/@acme%2f{PACKAGE}",
                                                        f"/acme/@acme-tools%2f{PACKAGE}"]
    assert npm_registry.accepted("/public/") == [f"/public/{PACKAGE}"]
    assert all(request.accepted for request in npm_registry.log)


@pytest.mark.parametrize(("spec", "message"), [
    ({"format": "pypi", "url": "https://pypi.example.com/simple/", "npmScopes": ["@acme"]},
     "npmScopes is for format npm only"),
    ({"format": "npm", "url": "https://npm.example.com/", "npmScopes": ["acme"]},
     "does not match"),
    ({"format": "npm", "url": "https://npm.example.com/", "npmScopes": ["@Acme"]},
     "does not match"),
    ({"format": "npm", "url": "https://npm.example.com/", "npmScopes": ["@a=b"]},
     "does not match"),
])
def test_validate_and_render_refuse_what_npm_could_not_read_back(tmp_path: Path,
                                                                 spec: dict[str, Any],
                                                                 message: str) -> None:
    root = make_repo(tmp_path / "repo", connections={
        "pkg": connection("pkg", type_="packages", spec=spec, credential={"token": "t"})},
        pipelines={"ci": pipeline("ci", "pkg")})
    found = [f for f in validate(root).findings if f.severity.value == "error"]
    assert [f.code for f in found] == ["CONNC102"], found
    proc = connc("render", "ci", "--repo", root, "--out", tmp_path / "out", timeout=60)
    assert proc.returncode == 1 and "npmScopes" in proc.stderr, proc.stderr


def test_a_scope_listed_twice_is_refused_by_validate_and_render(tmp_path: Path) -> None:
    # validate was clean, and render refused the connection as two serving one scope.
    root = make_repo(tmp_path / "repo", connections={
        "pkg": npm_connection("pkg", "https://npm.example.com/", npmScopes=["@acme", "@acme"])},
        pipelines={"ci": pipeline("ci", "pkg")})
    [found] = validate(root).findings
    assert (found.code, found.message) == (
        "CONNC102", "`spec.npmScopes[1]` repeats `@acme`; list each scope once")
    proc = connc("render", "ci", "--repo", root, "--out", tmp_path / "out", timeout=60)
    assert proc.returncode == 1
    assert f"{found.path}:{found.line}:{found.column}: CONNC102 {found.message}" in proc.stderr


def test_one_scope_served_by_two_connections_is_refused(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", connections={
        "one": npm_connection("one", "https://npm.example.com/one/", npmScopes=["@acme"]),
        "two": npm_connection("two", "https://npm.example.com/two/", npmScopes=["@acme"]),
    }, pipelines={"ci": pipeline("ci", "one", "two")})
    proc = connc("render", "ci", "--repo", root, "--out", tmp_path / "out", timeout=60)
    assert proc.returncode == 1
    assert "connections `one` and `two` both serve the npm scope @acme" in proc.stderr
    assert not (tmp_path / "out").exists()
