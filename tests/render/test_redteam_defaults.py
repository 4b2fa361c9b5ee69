"""Where the order of a pipeline's `uses` matters, and nowhere else: the writers held to
`scope.default_role`, which `connc diff` relies on to show another connection coming first
(a pipeline's tools take kubectl's context, npm's registry and pip's index-url from the first
such use, so whoever reorders them redirects what the pipeline fetches and publishes).

Each pair of connections of one type is rendered in both orders: the bundles differ beyond
the order of their lines exactly where `default_role` names a role.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connc.scope import default_role
from kit.build import connection, make_repo, pipeline
from kit.run import connc

PAIRS: dict[str, tuple[str, dict[str, Any], list[dict[str, Any]]]] = {
    # kind: (type, credential, [spec of the first, spec of the second])
    "kubernetes": ("kubernetes", {"token": "kube-token"},
                   [{"server": "https://k8s-a.example.com"},
                    {"server": "https://k8s-b.example.com"}]),
    "npm": ("packages", {"token": "npm-token"},
            [{"format": "npm", "url": "https://npm-a.example.com/"},
             {"format": "npm", "url": "https://npm-b.example.com/"}]),
    "npm-scoped": ("packages", {"token": "npm-token"},
                   [{"format": "npm", "url": "https://npm-a.example.com/", "npmScopes": ["@a"]},
                    {"format": "npm", "url": "https://npm-b.example.com/",
                     "npmScopes": ["@b"]}]),
    "pypi": ("packages", {"username": "u", "password": "pypi-password"},
             [{"format": "pypi", "url": "https://pypi-a.example.com/simple/"},
              {"format": "pypi", "url": "https://pypi-b.example.com/simple/"}]),
    "maven": ("packages", {"username": "u", "password": "maven-password"},
              [{"format": "maven", "url": "https://maven-a.example.com/", "repositoryId": "a"},
               {"format": "maven", "url": "https://maven-b.example.com/",
                "repositoryId": "b"}]),
    "registry": ("container-registry", {"username": "u", "password": "registry-password"},
                 [{"registry": "registry-a.example.com"}, {"registry": "registry-b.example.com"}]),
    "gitlab": ("gitlab-self-hosted", {"token": "gitlab-token"},
               [{"url": "https://git.example.com/org-a"}, {"url": "https://git.example.com/org-b"}]),
    "git": ("git", {"username": "u", "password": "git-password"},
            [{"url": "https://git-a.example.com/"}, {"url": "https://git-b.example.com/"}]),
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    connections, pipelines = {}, {}
    for kind, (type_, credential, specs) in PAIRS.items():
        ids = [f"{kind}-{side}" for side in "ab"]
        for conn_id, spec in zip(ids, specs, strict=True):
            connections[conn_id] = connection(conn_id, type_=type_, spec=spec,
                                              credential=credential)
        pipelines[f"{kind}-ab"] = pipeline(f"{kind}-ab", *ids)
        pipelines[f"{kind}-ba"] = pipeline(f"{kind}-ba", *reversed(ids))
    return make_repo(tmp_path_factory.mktemp("defaults") / "repo", connections=connections,
                     pipelines=pipelines)


def _lines(bundle: Path, pipeline_id: str) -> dict[str, list[str]]:
    """Each file of a bundle as its sorted lines, its own path and pipeline's name left out
    (and the manifest, which records when it was written)."""
    return {path.relative_to(bundle).as_posix():
            sorted(path.read_text().replace(str(bundle), "OUT").replace(pipeline_id, "ID")
                   .splitlines())
            for path in sorted(bundle.rglob("*")) if path.is_file()
            and path.name != "manifest.json"}


@pytest.mark.parametrize("kind", sorted(PAIRS))
def test_the_order_of_uses_matters_exactly_where_diff_says(repo: Path, tmp_path: Path,
                                                          kind: str) -> None:
    type_, _credential, specs = PAIRS[kind]
    bundles = []
    for order in ("ab", "ba"):
        out = tmp_path / order
        ran = connc("render", f"{kind}-{order}", "--repo", repo, "--out", out, timeout=60)
        assert ran.returncode == 0, ran.stderr
        bundles.append(_lines(out, f"{kind}-{order}"))
    roles = {default_role(type_, spec) for spec in specs}
    assert len(roles) == 1
    assert (bundles[0] != bundles[1]) == (roles != {None}), (kind, bundles)
