"""The bundle's git credential helper against what the real git sends it.

git hands a helper the host as the remote URL spells it (`host=Git.Example.COM:443`) and the
path URL-decoded (`org-a/%2e%2e/org-b` arrives as `org-a/../org-b`). The helper must match the
first as git's own config matching does (host case, default ports), and refuse the second: a
server, or a proxy in front of it, resolves it to org-b, which org-a's credential must not
reach. When git asks about a URL no connection covers, the helper says so on stderr only.
"""

# ruff: noqa: F811  -- pytest injects the imported fixtures by parameter name.
from __future__ import annotations

import dataclasses
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kit.build import connection, make_repo, pipeline, sourced
from kit.run import connc
from kit.servers.git_http import GitHttpServer, git_env, git_server  # noqa: F401
from kit.servers.normalising_proxy import normalising_proxy

pytestmark = pytest.mark.servers


def _render(tmp_path: Path, connections: dict[str, dict[str, Any]]) -> Path:
    root = make_repo(tmp_path / "repo", connections=connections,
                     pipelines={"ci": pipeline("ci", *connections)})
    out = tmp_path / "out"
    proc = connc("render", "--pipeline", "ci", "--repo", root, "--out", out, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return out


def _fill(out: Path, home: Path, url: str) -> subprocess.CompletedProcess[str]:
    """`git credential fill` for `url`: git's own URL parsing, config matching and helper."""
    return sourced(out, ["git", "credential", "fill"], git_env(home), stdin=f"url={url}\n\n")


def _answer(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


@dataclasses.dataclass
class Org:
    user: str
    secret: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(18))


# --- lookup keys as git normalises them ----------------------------------------------------------


def test_host_case_and_default_ports_match_as_git_matches(tmp_path: Path) -> None:
    a, b = Org("bot-a"), Org("bot-b")
    out = _render(tmp_path, {
        "org-a": connection("org-a", type_="git", spec={"url": "https://Git.Example.com/org-a"},
                            credential={"username": a.user, "password": a.secret}),
        # a default port written out in the connection: the same prefix as without it
        "org-b": connection("org-b", type_="git", spec={"url": "https://git.example.com:443/org-b/"},
                            credential={"username": b.user, "password": b.secret}),
    })
    home = tmp_path / "home"
    home.mkdir()
    for url, org in {
        "https://git.example.com/org-a/api.git": a,
        "https://GIT.EXAMPLE.COM/org-a/api.git": a,
        "https://Git.Example.com:443/org-a/api.git": a,
        "https://git.example.com/org-b/web.git": b,
        "https://git.example.com:443/org-b/web.git": b,
    }.items():
        filled = _fill(out, home, url)
        assert filled.returncode == 0, (url, filled.stderr)
        assert _answer(filled) == {"protocol": "https", "host": _answer(filled)["host"],
                                   "path": _answer(filled)["path"], "username": org.user,
                                   "password": org.secret}, url
    # A path is case-sensitive, and another port is another server.
    for url in ("https://git.example.com/ORG-A/api.git", "https://git.example.com:8443/org-a/x"):
        filled = _fill(out, home, url)
        assert filled.returncode != 0 and "password=" not in filled.stdout, url
        assert a.secret not in filled.stderr and b.secret not in filled.stderr


def test_clone_with_the_host_spelt_in_capitals(git_server: GitHttpServer,
                                               tmp_path: Path) -> None:
    org = Org("bot-a")
    url = git_server.add_repo("org-a/api.git")
    git_server.add_account(org.user, org.secret, "org-a")
    port = git_server.url.rsplit(":", 1)[1]
    out = _render(tmp_path, {"org-a": connection(
        "org-a", type_="git", spec={"url": f"http://localhost:{port}/org-a"},
        credential={"username": org.user, "password": org.secret})})
    home = tmp_path / "home"
    home.mkdir()
    shouting = url.replace("127.0.0.1", "LocalHost")
    cloned = sourced(out, ["git", "clone", "-q", shouting, tmp_path / "clone"], git_env(home))
    assert cloned.returncode == 0, cloned.stderr
    assert git_server.users_for("org-a") == {org.user}


# --- dot segments -----------------------------------------------------------------------------


@pytest.fixture
def proxy(git_server: GitHttpServer) -> Iterator[str]:
    """The URL of a normalising proxy in front of `git_server`."""
    with normalising_proxy(git_server.url) as url:
        yield url


@pytest.mark.parametrize("segment", ["%2e%2e", "%2E%2e", "%2e.", ".."])
def test_a_path_with_dot_segments_gets_no_credential(git_server: GitHttpServer, proxy: str,
                                                     tmp_path: Path, segment: str) -> None:
    a, whole = Org("bot-a"), Org("bot-host")
    git_server.add_repo("org-a/api.git")
    git_server.add_repo("org-b/web.git")
    git_server.add_account(a.user, a.secret, "org-a")
    git_server.add_account(whole.user, whole.secret, "org-b")
    out = _render(tmp_path, {
        "org-a": connection("org-a", type_="git", spec={"url": f"{proxy}/org-a"},
                            credential={"username": a.user, "password": a.secret}),
        # Host-wide: its config section (useHttpPath) is what makes git ask the helper about
        # `org-a/../org-b/...`, a path that looks like org-a's to a prefix comparison.
        "host": connection("host", type_="git", spec={"url": proxy},
                           credential={"username": whole.user, "password": whole.secret}),
    })
    home = tmp_path / "home"
    home.mkdir()
    url = f"{proxy}/org-a/{segment}/org-b/web.git"
    # Protocol v0: the ref listing is one GET, all the proxy forwards.
    cloned = sourced(out, ["git", "-c", "protocol.version=0", "ls-remote", url], git_env(home))
    # org-a's credential never travels, whatever the proxy makes of the path.
    assert [r for r in git_server.log if r.user == a.user] == []
    assert a.secret not in cloned.stderr and whole.secret not in cloned.stderr
    if segment == "..":
        # git resolves plain dot segments itself before it asks: org-b, the host-wide one's.
        assert cloned.returncode == 0, cloned.stderr
        assert git_server.users_for("org-b") == {whole.user}
    else:
        assert cloned.returncode != 0
        assert "connc: refusing to answer for" in cloned.stderr
        assert [r.user for r in git_server.log] == [None]  # the anonymous probe only
    # The helper itself, asked as git asks it: nothing on stdout, a failure status.
    request = (f"protocol=http\nhost={proxy.split('://')[1]}\n"
               f"path=org-a/{segment}/org-b/web.git\n\n")
    helped = subprocess.run([out / "git/askpass", "get"], input=request, capture_output=True,
                            text=True, timeout=10, check=False)
    assert (helped.returncode, helped.stdout) == (1, ""), helped.stderr
    assert "path has . or .. segments" in helped.stderr


def test_names_with_dots_are_not_dot_segments(tmp_path: Path) -> None:
    a = Org("bot-a")
    out = _render(tmp_path, {"org-a": connection(
        "org-a", type_="git", spec={"url": "https://git.example.com/org-a"},
        credential={"username": a.user, "password": a.secret})})
    home = tmp_path / "home"
    home.mkdir()
    for url in ("https://git.example.com/org-a/.github.git",
                "https://git.example.com/org-a/my..repo.git",
                "https://git.example.com/org-a/v1.0/x.git"):
        assert _answer(_fill(out, home, url)).get("password") == a.secret, url


# --- the hint for a URL no connection covers --------------------------------------------------


def test_git_is_told_which_url_no_connection_covers(git_server: GitHttpServer,
                                                    tmp_path: Path) -> None:
    a = Org("bot-a")
    git_server.add_repo("org-a/api.git")
    other = git_server.add_repo("org-b/web.git")
    git_server.add_account(a.user, a.secret, "org-a")
    out = _render(tmp_path, {"org-a": connection(
        "org-a", type_="git", spec={"url": f"{git_server.url}/org-a"},
        credential={"username": a.user, "password": a.secret})})
    home = tmp_path / "home"
    home.mkdir()
    cloned = sourced(out, ["git", "clone", "-q", other, tmp_path / "clone"], git_env(home))
    assert cloned.returncode != 0
    hint = f"connc: no connection of pipeline ci covers {git_server.url}"
    assert hint in cloned.stderr and "git asks for credentials it was not given" in cloned.stderr
    assert a.secret not in cloned.stderr
    assert [r for r in git_server.log if r.user is not None] == []
    # As GIT_ASKPASS: the hint on stderr, nothing on stdout (git would take it as the answer).
    asked = subprocess.run([out / "git/askpass", "Username for 'https://Elsewhere.example': "],
                           capture_output=True, text=True, timeout=10, check=False)
    assert (asked.returncode, asked.stdout) == (1, "")
    assert asked.stderr == ("connc: no connection of pipeline ci covers https://elsewhere.example;"
                            " git asks for credentials it was not given\n")
