"""Each client finds the bundle's credential under the key it derives from the URL it fetches.

npm, pip, docker and skopeo each look a credential up by a key built from a URL (npm's
"nerf dart" `//host/path/`, pip's netloc, docker's `auths` key); the bundle must hold exactly
the key the client computes, or the client finds nothing and gets a 401. And keys written
into the npmrc parse back to exactly the intended key and value. Proven with the
real clients against loopback servers (servers/npm_registry, servers/pypi_index,
servers/registry) and with npm's own nerf-dart.js and ini parser run by node.

No secret reaches an assertion message: client output is checked for the secrets first and
shown redacted.
"""

# ruff: noqa: F811  -- pytest injects the imported fixtures by parameter name.
from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from connc import urls
from connc.errors import RenderError
from connc.render import docker, packages
from connc.render import textformat as text
from connc.render.context import Output, Resolved
from connc.secrets import Secret
from kit.build import connection, make_repo, pipeline, sourced
from kit.run import connc
from kit.servers._net import clean_env
from kit.servers.npm_registry import PACKAGE, NpmRegistry, Scope, npm_registry  # noqa: F401
from kit.servers.pypi_index import PypiIndex, pypi_index  # noqa: F401
from kit.servers.registry import RegistryServer, registry_server  # noqa: F401

NPM = shutil.which("npm")
needs_npm = pytest.mark.skipif(NPM is None, reason="npm is not installed")


def _npm_modules() -> Path:
    """npm's own node_modules (its config and ini code, the very code `npm` runs)."""
    assert NPM is not None
    return Path(NPM).resolve().parent.parent / "node_modules"


def _node(script: str, data: object, env: dict[str, str] | None = None) -> Any:
    proc = subprocess.run(["node", "-e", script], input=json.dumps(data), env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _resolved(conn_id: str, type_: str, spec: dict[str, Any], **credential: str) -> Resolved:
    return Resolved(id=conn_id, spec={"type": type_, **spec}, use={},
                    credential={k: Secret(v) for k, v in credential.items()})


def _npm_item(conn_id: str, url: str, **credential: str) -> Resolved:
    return _resolved(conn_id, "packages", {"format": "npm", "url": url}, **credential)


def _write(tmp_path: Path, module: Any, *items: Resolved) -> Output:
    output = Output(out=tmp_path / "out", pipeline="ci")
    module.write(list(items), output)
    for relpath, (data, _mode) in output.files.files.items():
        (tmp_path / "out" / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "out" / relpath).write_bytes(data)
    return output


def _shown(proc: subprocess.CompletedProcess[str], *secrets: str) -> str:
    """The client's output for an assertion message, after checking it holds no secret."""
    both = proc.stdout + proc.stderr
    leaked = [i for i, secret in enumerate(secrets) if secret in both]
    assert not leaked, f"the client printed secret #{leaked} in clear"
    return both


# --- npm: the nerf dart ------------------------------------------------------------------------

# Host case, default ports, trailing slash or not, dot segments, characters new URL() encodes
# or keeps, IDNA, IPv4 and IPv6 spellings.
NERF_URLS = [
    "http://LocalHost:80/", "https://Host.Example.COM:443/a/b", "https://h/a/b/", "https://h:8443",
    "https://h:0443/", "http://h:443/", "https://h/x=y/", "https://h/x;y[z]/", "https://h/a\"b'c/",
    "https://h/a^b|c~d/", "https://h/a{b}`<>/", "https://h/${HOME}/", "https://h/a\u00a0b/",
    "https://h/\u00e4/", "https://h/a%7eb/%2E/c/", "https://h/a/../b/", "https://h/a/%2e%2E/b/",
    "https://h/.a/..b/", "https://h/a/.", "https://h/a/..", "https://h/a//b", "https://h/a%2fb/",
    "https://b\u00fccher.de/", "https://H%41st.com/", "https://h./", "https://127.1/",
    "https://0x7f.1/", "https://2130706433/", "https://0177.0.0.1/", "https://[0:0::1]:443/",
    "https://[::ffff:127.0.0.1]/",
]


@needs_npm
def test_npm_keys_are_npms_own_nerf_darts() -> None:
    """The `registry=` value and key prefix connc writes are what npm computes for the url
    taken as a directory: `new URL()`'s href, and nerf-dart.js (what `npm whoami`/`publish`
    look up); npm-registry-fetch walks a request URL up to the same `//host/path/`."""
    script = (f"const nerf = require({json.dumps(str(_npm_modules() / '@npmcli/config/lib/nerf-dart.js'))});"
              "const urls = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
              "console.log(JSON.stringify(urls.map(u => {"
              "  const dir = u.endsWith('/') ? u : u + '/';"
              "  return [new URL(dir).href, nerf(dir)] })))")
    expected = _node(script, NERF_URLS)
    assert [list(packages.npm_registry(url)) for url in NERF_URLS] == expected


# --- npm: the npmrc parses back exactly --------------------------------------------------------

HOSTILE_KEYS = [
    "//h/x=y/:_authToken", "//h/a;b#c/:_authToken", "//h/[s]/:_authToken", "[section]",
    "//h/'q'/:username", '"//h/quoted/:_password"', "//h/back\\slash/:_authToken",
    "//h/$%7BX%7D/${HOME}/\\${HOME}/:_authToken", "//h/\u00e4\u2028/:_authToken", " //h/ :k",
    "//h/a.b/:_authToken", "plain-key",
]
HOSTILE_VALUES = [
    'tok"en;#x=y', "a\\;b\\#c\\\\d", "${HOME}", "\\${HOME}", "\\\\${HOME?}", "${}", "$HOME",
    "[x]", "'quoted'", '"quoted"', "a\u2028\u00e4", "x=", "=x", "a b",
]


@needs_npm
def test_npmrc_keys_and_values_parse_back_exactly(tmp_path: Path) -> None:
    """Through npm's own `ini` decoder and environment expansion (@npmcli/config loadObject
    and parseField: `envReplace` on key and value, the value trimmed)."""
    pairs = [(key, f"value-{i}") for i, key in enumerate(HOSTILE_KEYS)]
    pairs += [(f"//h/k{i}/:_authToken", value) for i, value in enumerate(HOSTILE_VALUES)]
    npmrc = "".join(text.fill("npmrc", "line", key=text.npmrc_key(k), value=text.npmrc_value(v))
                    for k, v in pairs)
    modules = _npm_modules()
    script = (f"const ini = require({json.dumps(str(modules / 'ini'))});"
              f"const env = require({json.dumps(str(modules / '@npmcli/config/lib/env-replace.js'))});"
              "const data = ini.decode(JSON.parse(require('fs').readFileSync(0, 'utf8')));"
              "console.log(JSON.stringify(Object.entries(data).map(([k, v]) =>"
              "  [env(k, process.env), env(String(v).trim(), process.env)])))")
    decoded = _node(script, npmrc, env={"PATH": "/usr/bin:/bin", "HOME": "/expanded"})
    assert sorted(map(tuple, decoded)) == sorted(pairs)


@pytest.mark.parametrize("value", [" leading", "trailing ", "true", "false", "null",
                                   "undefined"])
def test_npmrc_values_npm_would_change_are_refused(value: str) -> None:
    with pytest.raises(RenderError, match="refused"):
        text.npmrc_value(value)


def test_npmrc_key_that_npm_would_read_as_a_list_is_refused() -> None:
    with pytest.raises(RenderError, match="list"):
        text.npmrc_key("//h/:_authToken[]")


def test_two_npm_connections_for_one_registry_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="both for the npm registry //localhost:4873/a/"):
        _write(tmp_path, packages, _npm_item("one", "http://LocalHost:4873/a", token="t1"),
               _npm_item("two", "http://localhost:4873/b/../a/", token="t2"))


# --- npm: the real client against a registry ---------------------------------------------------


def _npm_env(tmp_path: Path, npmrc: Path | None = None) -> dict[str, str]:
    home = tmp_path / "npm-home"
    home.mkdir(exist_ok=True)
    (home / "global-npmrc").write_text("")  # not /etc/npmrc, not the user's
    env = clean_env(home, NPM_CONFIG_GLOBALCONFIG=str(home / "global-npmrc"),
                    NPM_CONFIG_CACHE=str(home / "cache"), NPM_CONFIG_UPDATE_NOTIFIER="false",
                    NPM_CONFIG_FUND="false", NPM_CONFIG_AUDIT="false")
    if npmrc is not None:
        env["NPM_CONFIG_USERCONFIG"] = str(npmrc)
    return env


def _npm(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert NPM is not None
    return subprocess.run([NPM, *args], env=env, cwd=tmp_path / "npm-home",
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                          check=False)


@needs_npm
@pytest.mark.servers
def test_npm_finds_the_token_of_a_mixed_case_registry_url(npm_registry: NpmRegistry,
                                                          tmp_path: Path) -> None:
    """The issue's case, through `connc render` and `. OUT/env`: `url: http://LocalHost:PORT/`
    used to give the key `//LocalHost:PORT/`, which npm (host lower-cased) never finds."""
    token = "npm_mixedcase-token-1"
    npm_registry.add(Scope("/", "ci-reader", token=token))
    url = npm_registry.url("LocalHost")
    root = make_repo(tmp_path / "repo", connections={"npm": connection(
        "npm", type_="packages", spec={"format": "npm", "url": url},
        credential={"token": token})}, pipelines={"ci": pipeline("ci", "npm")})
    out = tmp_path / "out"
    proc = connc("render", "--pipeline", "ci", "--repo", root, "--out", out, timeout=60)
    assert proc.returncode == 0, proc.stderr
    env = _npm_env(tmp_path)
    home = tmp_path / "npm-home"
    for args in (["whoami"], ["whoami", "--registry", url],
                 ["view", PACKAGE, "version", "--registry", npm_registry.url("localhost")]):
        ran = sourced(out, [str(NPM), *args], env, cwd=home)
        shown = _shown(ran, token)
        assert ran.returncode == 0, shown
        assert ran.stdout.strip() == ("1.0.0" if args[0] == "view" else "ci-reader")
    assert len(npm_registry.accepted("/")) == 3
    assert all(request.accepted for request in npm_registry.log)


@needs_npm
@pytest.mark.servers
def test_npm_finds_each_credential_under_its_path(npm_registry: NpmRegistry,
                                                  tmp_path: Path) -> None:
    """Several registries on one host, each url spelt differently from how npm is then told
    the registry: host case, a path prefix without its trailing slash, dot segments,
    characters that break ini keys (`=`, `;`, `[`, `]`, `'`) and one npm percent-encodes
    (`"`), a token with characters special to ini, JSON and npm's `${...}`, Basic auth."""
    port = npm_registry.port
    secrets = {
        "private": "tok-private-1",
        "ini": 'tok"en;#x=y\\${HOME}',
        "basic": "pass word;#=",
    }
    ini_path = "/x=y;z[1]'q%22/"  # npm's spelling in a config file: new URL() keeps `'`
    ini_cli = "/x=y;z[1]%27q%22/"  # its spelling of a --registry: url.parse() escapes `'`
    npm_registry.add(Scope("/npm/private/", "private-reader", token=secrets["private"]))
    npm_registry.add(Scope(ini_path, "ini-reader", token=secrets["ini"]))
    npm_registry.add(Scope(ini_cli, "ini-reader", token=secrets["ini"]))
    npm_registry.add(Scope("/basic/", "basic-user", password=secrets["basic"]))
    output = _write(
        tmp_path, packages,
        _npm_item("ini", f"http://localhost:{port}/x=y;z[1]'q\"/", token=secrets["ini"]),
        _npm_item("private", f"http://LocalHost:{port}/npm/private", token=secrets["private"]),
        _npm_item("basic", f"http://LOCALHOST:{port}/other/../basic/./",
                  username="basic-user", password=secrets["basic"]))
    assert output.env["NPM_CONFIG_USERCONFIG"].endswith("npm/npmrc")
    env = _npm_env(tmp_path, tmp_path / "out/npm/npmrc")
    runs = [
        # (registry as the user writes it, None: the npmrc's `registry=`; command; scope)
        (f"http://localhost:{port}/npm/private/", "whoami", "/npm/private/"),
        (f"http://LocalHost:{port}/npm/private", "view", "/npm/private/"),
        (None, "whoami", ini_path),
        (None, "view", ini_path),
        (f"http://localhost:{port}/x=y;z[1]'q\"/", "whoami", ini_cli),
        (f"http://LOCALHOST:{port}/x=y;z[1]'q%22", "view", ini_cli),
        (f"http://localhost:{port}/basic/", "view", "/basic/"),
    ]
    for registry, command, _scope in runs:
        args = ["whoami"] if command == "whoami" else ["view", PACKAGE, "version"]
        ran = _npm([*args, *(["--registry", registry] if registry else [])], env, tmp_path)
        shown = _shown(ran, *secrets.values())
        assert ran.returncode == 0, f"{command} {registry}: {shown}"
    for _registry, _command, scope in runs:
        assert npm_registry.accepted(scope), scope
    assert all(request.accepted for request in npm_registry.log), [
        request.path for request in npm_registry.log if not request.accepted]

    # `npm config list` shows each key exactly, protected; never a secret (the old writer's
    # bare `//host/x=y;.../:_authToken=...` line showed the token as the value of `//host/x`).
    listed = _npm(["config", "list"], env, tmp_path)
    shown = _shown(listed, *secrets.values())
    assert listed.returncode == 0, shown
    for path in (ini_path, ini_cli):
        assert f"//localhost:{port}{path}:_authToken = (protected)" in listed.stdout
    assert f"//localhost:{port}/npm/private/:_authToken = (protected)" in listed.stdout
    assert f"//localhost:{port}/basic/:_password = (protected)" in listed.stdout
    assert "Unknown user config" not in listed.stderr


# --- pip ---------------------------------------------------------------------------------------


def _pip_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "pip-home"
    home.mkdir(exist_ok=True)
    return clean_env(home, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
                     PIP_KEYRING_PROVIDER="disabled", **extra)


def _pip_download(env: dict[str, str], dest: Path,
                  out: Path | None = None) -> subprocess.CompletedProcess[str]:
    command: list[str | os.PathLike[str]] = [sys.executable, "-m", "pip", "download", "--no-deps",
                                 "--no-cache-dir", "--dest", dest, "connc-probe==1.0"]
    if out is not None:
        return sourced(out, command, env)
    return subprocess.run(list(map(str, command)), env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.servers
def test_pip_downloads_from_a_mixed_case_index_url(pypi_index: PypiIndex,
                                                   tmp_path: Path) -> None:
    """`url: http://LocalHost:PORT/simple` through `connc render` and `. OUT/env`: the page
    and the wheel it links by absolute URL (`http://localhost:PORT/files/...`) both get the
    credential."""
    url = f"http://LocalHost:{pypi_index.port}/simple"
    root = make_repo(tmp_path / "repo", connections={"pypi": connection(
        "pypi", type_="packages", spec={"format": "pypi", "url": url},
        credential={"username": pypi_index.username, "password": pypi_index.password})},
        pipelines={"ci": pipeline("ci", "pypi")})
    out = tmp_path / "out"
    proc = connc("render", "--pipeline", "ci", "--repo", root, "--out", out, timeout=60)
    assert proc.returncode == 0, proc.stderr
    parser = configparser.RawConfigParser()
    parser.read(out / "pip/pip.conf")
    assert parser["global"]["index-url"].startswith("http://reader:")
    assert parser["global"]["index-url"].endswith(f"@{pypi_index.canonical}/simple")
    ran = _pip_download(_pip_env(tmp_path), tmp_path / "dl", out)
    assert ran.returncode == 0, _shown(ran, pypi_index.password)
    assert (tmp_path / "dl" / pypi_index.filename).is_file()
    assert pypi_index.refused() == []
    assert [path for path, _ in pypi_index.log] == [
        "/simple/connc-probe/", f"/files/{pypi_index.filename}"]


def _pip_authorizations(index_url: str, *urls: str) -> list[str | None]:
    """The Authorization header pip's own auth (network/auth.py, over its vendored requests)
    puts on each request of a run, the index URL's pages first."""
    from pip._internal.network.auth import MultiDomainBasicAuth
    from pip._vendor.requests.models import Request

    auth = MultiDomainBasicAuth(prompting=False, index_urls=[index_url])
    sent = []
    for url in urls:
        prepared = auth(Request("GET", url).prepare())  # type: ignore[no-untyped-call]
        sent.append(prepared.headers.get("Authorization"))
    return sent


def test_pip_sends_the_index_credential_to_links_without_the_default_port(
        tmp_path: Path) -> None:
    """requests lower-cases the host itself but keeps a written `:443`, and pip gives the
    credential to a linked file only when its netloc is the index's as text: so `:443` must
    go, or the wheel linked as `https://pypi.example.com/files/...` gets none (control)."""
    url = "https://PyPI.Example.COM:443/simple/"
    _write(tmp_path, packages, _resolved("pypi", "packages", {"format": "pypi", "url": url},
                                         username="u", password="p"))
    parser = configparser.RawConfigParser()
    parser.read(tmp_path / "out/pip/pip.conf")
    written = parser["global"]["index-url"]
    assert written == "https://u:p@pypi.example.com/simple/"
    page, link = written + "connc-probe/", "https://pypi.example.com/files/x.whl"
    assert _pip_authorizations(written, page, link) == ["Basic dTpw", "Basic dTpw"]
    as_written = "https://u:p@PyPI.Example.COM:443/simple/"
    assert _pip_authorizations(as_written, as_written + "connc-probe/", link) == [
        "Basic dTpw", None]


def test_pip_index_urls_use_the_canonical_host(tmp_path: Path) -> None:
    def item(conn_id: str, url: str) -> Resolved:
        return _resolved(conn_id, "packages", {"format": "pypi", "url": url},
                         username="u@x", password="p:w/%")
    _write(tmp_path, packages, item("one", "https://PyPI.Example.COM:443/Simple/"),
           item("two", "https://mirror.example.com:8443/a%2Fb/simple"))
    parser = configparser.RawConfigParser()
    parser.read(tmp_path / "out/pip/pip.conf")
    assert parser["global"]["index-url"] == "https://u%40x:p%3Aw%2F%25@pypi.example.com/Simple/"
    assert parser["global"]["extra-index-url"].split() == [
        "https://u%40x:p%3Aw%2F%25@mirror.example.com:8443/a%2Fb/simple"]
    with pytest.raises(RenderError, match="both for the index"):
        _write(tmp_path / "dup", packages, item("one", "https://pypi.example.com/simple/"),
               item("two", "https://PYPI.example.com:443/simple"))


# --- docker and skopeo -------------------------------------------------------------------------


@pytest.mark.parametrize(("registry", "keys"), [
    ("registry.example.com", ["registry.example.com"]),
    ("LocalHost:5000", ["localhost:5000", "LocalHost:5000"]),
    ("registry.example.com:443", ["registry.example.com", "registry.example.com:443"]),
    ("Registry.Example.com:443", ["registry.example.com", "registry.example.com:443",
                                  "Registry.Example.com", "Registry.Example.com:443"]),
    ("https://Registry.Example.com/v2/", ["registry.example.com", "Registry.Example.com"]),
    ("ghcr.io/acme", ["ghcr.io/acme"]),
    ("https://index.docker.io/v1/", [urls.DOCKER_HUB]),
    ("docker.io", [urls.DOCKER_HUB]),
    ("index.docker.io", [urls.DOCKER_HUB]),
    ("Registry-1.Docker.io:443", [urls.DOCKER_HUB]),
])
def test_docker_keys(registry: str, keys: list[str]) -> None:
    assert docker.registry_keys(registry) == keys


def test_two_connections_for_one_registry_are_refused(tmp_path: Path) -> None:
    def item(conn_id: str, registry: str) -> Resolved:
        return _resolved(conn_id, "container-registry", {"registry": registry},
                         username="u", password="p")
    with pytest.raises(RenderError, match="`one` and `two` are both for registry "
                                          "registry.example.com"):
        _write(tmp_path, docker, item("one", "registry.example.com"),
               item("two", "Registry.Example.com:443"))


def _skopeo_finds(env: dict[str, str], reference: str) -> bool:
    """Whether skopeo (containers/image) finds a credential for `reference` in the files it
    reads: it looks up before connecting, and says so at debug level (skopeo 1.9.3)."""
    proc = subprocess.run(["skopeo", "--debug", "inspect", "--retry-times", "0",
                           f"docker://{reference}"], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, check=False)
    return f"Found credentials for {reference} " in proc.stderr


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_finds_every_spelling_of_one_server(tmp_path: Path) -> None:
    """skopeo folds neither case nor `:443`, so each spelling a reference may use has its
    key; Docker Hub under any of its names is found through its legacy key. The names are
    under .invalid: the look-up happens before any connection, which then fails."""
    def item(conn_id: str, registry: str) -> Resolved:
        return _resolved(conn_id, "container-registry", {"registry": registry},
                         username="u", password="p")
    _write(tmp_path, docker, item("mixed", "Registry.Invalid:443"),
           item("hub", "docker.io"), item("port", "other.invalid:5000"))
    env = clean_env(tmp_path / "home", DOCKER_CONFIG=str(tmp_path / "out/docker"))
    for reference in ["registry.invalid/app", "registry.invalid:443/app",
                      "Registry.Invalid/app", "Registry.Invalid:443/app",
                      "docker.io/library/app", "other.invalid:5000/app"]:
        assert _skopeo_finds(env, reference), reference
    assert not _skopeo_finds(env, "other.invalid/app")  # another port: another server


@pytest.mark.servers
@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_and_docker_reach_a_registry_written_in_mixed_case(
        registry_server: RegistryServer, tmp_path: Path) -> None:
    """Against the real registry: `registry: LocalHost:PORT`, the image named with the host
    in lower case and as written."""
    registry_server.push_test_image("lookup/app", "v1")
    port = registry_server.host.rsplit(":", 1)[1]
    _write(tmp_path, docker, _resolved(
        "reg", "container-registry", {"registry": f"LocalHost:{port}"},
        username=registry_server.username, password=registry_server.password))
    env = clean_env(tmp_path / "home", DOCKER_CONFIG=str(tmp_path / "out/docker"))
    for host in (f"localhost:{port}", f"LocalHost:{port}"):
        proc = subprocess.run(["skopeo", "list-tags", "--tls-verify=false",
                               f"docker://{host}/lookup/app"], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.returncode == 0, _shown(proc, registry_server.password)
        assert json.loads(proc.stdout)["Tags"] == ["v1"]
        if shutil.which("docker"):
            # The docker CLI reads config.json itself for `manifest inspect` (no daemon).
            proc = subprocess.run(["docker", "manifest", "inspect", "--insecure",
                                   f"{host}/lookup/app:v1"], env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=60, check=False)
            assert proc.returncode == 0, _shown(proc, registry_server.password)
