"""`connc check --reach` against a hostile service: whatever it echoes of the credential it
was sent, in whatever form the request carried it, is never printed; and reach leaves no
credential live on a service that it learns nothing from."""

# ruff: noqa: F811  -- pytest injects the imported fixtures by parameter name.

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from checkkit import canary, run_check

from kit.build import connection, key_env, make_repo, pipeline
from kit.run import connc
from kit.servers.github_fake import FakeGitHub, github_api  # noqa: F401
from kit.servers.hostile import Reply, Seen, _RawServer, read_head, recording_server
from kit.servers.oidc import GitHubTokenService, github_tokens  # noqa: F401
from kit.servers.pypi_index import TrustedIndex, trusted_index  # noqa: F401


def test_an_echoed_basic_header_or_encoded_password_is_redacted(tmp_path: Path) -> None:
    """A registry that lists, as repository names, the Basic header it was sent (base64 of
    user:password), the password URL-encoded, and the password base64-encoded."""
    password = canary() + "/+="  # characters that URL encoding changes
    basic = base64.b64encode(f"reader:{password}".encode()).decode()
    echoed = [basic, quote(password, safe=""), base64.b64encode(password.encode()).decode()]

    def catalog(seen: Seen) -> Reply:
        if "Authorization" not in seen.headers:
            return Reply(401, {"WWW-Authenticate": 'Basic realm="registry"'})
        return Reply(200, {"Content-Type": "application/json"},
                     json.dumps({"repositories": [f"x/{form}" for form in echoed]}).encode())

    with recording_server({"/v2/_catalog": catalog}) as server:
        root = make_repo(tmp_path / "repo", connections={"reg": connection(
            "reg", type_="container-registry", spec={"registry": f"127.0.0.1:{server.port}"},
            credential={"username": "reader", "password": password})})
        ran = run_check(root, tmp_path, "--reach", hidden=[password, *echoed])
        text = connc("check", "--reach", "--repo", root, env=key_env(), timeout=60)
    assert ran.status("reg") == "ok", ran.outcomes
    assert [item["name"] for item in ran.reach("reg")["items"]] == ["x/[redacted]"] * 3
    for form in [password, *echoed]:
        assert form not in text.stdout + text.stderr



def test_reach_mints_no_upload_token_it_learns_nothing_from(
        tmp_path: Path, trusted_index: TrustedIndex, github_tokens: GitHubTokenService) -> None:
    """`--reach` changes nothing on a service. A trusted-publishing mint leaves an upload
    token live for 15 minutes (it cannot be revoked) and a line in the project's security
    log, and an index says nothing of what that token may upload: reach asks nothing."""
    root = make_repo(tmp_path / "repo", connections={"pub": connection(
        "pub", type_="pypi-publish", spec={"url": trusted_index.url,
                                           "identity": {"audience": "pypi"}},
        credential={})})
    ran = run_check(root, tmp_path, "--reach", env=github_tokens.github_env())
    assert ran.status("pub") == "ok", ran.outcomes
    assert ran.reach("pub")["asked"] is False
    assert trusted_index.minted == {} and trusted_index.seen_jti == set()
    assert github_tokens.issued == []  # not even an ID token was asked for


@contextlib.contextmanager
def _heavy_headers(status: bytes, name: bytes, value: bytes, lines: int) -> Iterator[int]:
    """Answers every request with `lines` header lines `name: value` (a client merges them
    into one value of megabytes), and a small JSON body; yields the port."""
    body = b'{"repositories": ["a"]}'

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        read_head(conn)
        head = b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
        head += b"Content-Length: %d\r\nConnection: close\r\n" % len(body)
        head += (name + b": " + value + b"\r\n") * lines
        conn.sendall(head + b"\r\n" + body)

    with _RawServer(handle) as server:
        yield server.port


@pytest.mark.parametrize(("reach", "status", "name", "value"), [
    (True, b"200 OK", b"Link", b"<" * 60_000),  # the catalog's next page
    (False, b"401 Unauthorized", b"WWW-Authenticate", b"Bearer " + b"a" * 60_000),
])
def test_megabytes_of_header_end_within_the_deadline(tmp_path: Path, reach: bool,
                                                     status: bytes, name: bytes,
                                                     value: bytes) -> None:
    """A hostile registry sends fifty header lines of 60,000 characters: parsed by scanning,
    not by a backtracking pattern, which would run for hours past every deadline."""
    password = canary()
    with _heavy_headers(status, name, value, 50) as port:
        root = make_repo(tmp_path / "repo", connections={"reg": connection(
            "reg", type_="container-registry", spec={"registry": f"127.0.0.1:{port}"},
            credential={"username": "reader", "password": password})})
        started = time.monotonic()
        ran = run_check(root, tmp_path, *(["--reach"] if reach else []), "--timeout", "5",
                        hidden=[password], timeout=120)
        took = time.monotonic() - started
    assert took < 30, took
    assert ran.proc.returncode in (0, 1) and "Traceback" not in ran.proc.stderr


def test_a_next_page_that_never_ends_is_not_followed_until_the_deadline(
        tmp_path: Path) -> None:
    """A catalog whose every page is empty and links to itself: a bounded number of pages,
    then the list is said to go on; not thousands of requests with the credential until the
    deadline, ending in a timeout that blames the service for not answering."""
    from connc.check.reach import MAX_PAGES

    password = canary()
    loop = Reply(200, {"Content-Type": "application/json",
                       "Link": '</v2/_catalog?n=100>; rel="next"'}, b'{"repositories": []}')
    with recording_server({"/v2/_catalog": loop}) as server:
        root = make_repo(tmp_path / "repo", connections={"reg": connection(
            "reg", type_="container-registry", spec={"registry": f"127.0.0.1:{server.port}"},
            credential={"username": "reader", "password": password})})
        ran = run_check(root, tmp_path, "--reach", "--timeout", "20", hidden=[password])
    assert ran.status("reg") == "ok", ran.outcomes
    assert ran.reach("reg")["complete"] is False
    assert len(server.seen) <= MAX_PAGES + 1  # and the anonymous first ask


def test_github_installation_pages_are_bounded() -> None:
    from connc import http, process
    from connc.github.apps import InstallationReader
    from connc.secrets import Secret

    token = canary()
    with recording_server() as server:
        server.routes["/installation/repositories"] = Reply(
            200, {"Content-Type": "application/json",
                  "Link": f'<{server.url()}/installation/repositories?per_page=100>; '
                          f'rel="next"'},
            json.dumps({"total_count": 1, "repositories": []}).encode())
        # The deadline ends an unbounded loop (a failure here), as `--reach`'s would.
        with http.limits(deadline=process.Deadline(10)):
            listing = InstallationReader(server.url(), Secret(token), connection="gh",
                                         timeout=5).repositories(500)
    assert listing.complete is False and listing.items == []
    assert len(server.seen) <= 100


def test_permission_names_a_github_sends_are_shown_printable(github_api: FakeGitHub,
                                                            tmp_path: Path) -> None:
    """A GitHub (Enterprise Server) that names a permission with an escape sequence and a
    newline forging a CI log line: the reach names it printable."""
    forged = "x\x1b[2J\n::error::all checks passed"
    github_api.permissions[forged] = "read\x1b[8m"
    root = make_repo(tmp_path / "repo", connections={"gh": connection(
        "gh", type_="github-app", credential={"privateKey": github_api.private_key_pem},
        spec={"apiUrl": github_api.url, "appId": int(github_api.app_id),
              "installationId": github_api.installation_id})},
        pipelines={"ci": pipeline("ci", "gh")})
    text = connc("check", "--reach", "--repo", root, env=key_env(), timeout=60)
    assert text.returncode == 0, text.stderr
    assert "\x1b" not in text.stdout
    assert not [line for line in text.stdout.splitlines() if line.startswith("::error::")]
    assert "x\N{REPLACEMENT CHARACTER}[2J" in text.stdout  # named all the same
    ran = run_check(root, tmp_path, "--reach")
    assert forged not in json.dumps(ran.reach("gh"), ensure_ascii=False)
