"""What `connc check` asks each service, and how it reads the answers.

A probe takes one decrypted connection (a render `Resolved`) and returns a `Result`: ok or
not, what was proven (or why not), and the URL it asked. The probes that have a real client
(git, kubectl) render a one-connection bundle with render's own writers and run the client
after `. BUNDLE/env`, as a pipeline step would; the others make the one HTTP request their
client would make first (`docker login`'s `/v2/`, `npm whoami`, an index GET), and github-app
mints a token with connc's GitHub client.

Messages are ours, chosen from status codes and known error patterns: never a response body,
a tool's stderr or an exception's text, any of which could quote a credential.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from connc import __version__
from connc.errors import ConncError
from connc.github import ca_bundle
from connc.policy import is_loopback
from connc.render.context import Resolved
from connc.secrets import Secret

USER_AGENT = f"connc-check/{__version__}"
_BODY_LIMIT = 64 * 1024  # the JSON answers read here are tiny; never buffer a whole index


@dataclasses.dataclass(frozen=True)
class Result:
    ok: bool
    message: str
    target: str


class ProbeFailure(Exception):
    """No usable answer (TLS, unreachable, timeout, a tool that failed); the text is safe."""


@dataclasses.dataclass(frozen=True)
class Context:
    workdir: Path  # private (0700) to one connection, removed after its probe
    timeout: float  # seconds for each network request; a tool run gets twice as long

    def bundle(self, resolved: Resolved) -> Path:
        """A bundle with this connection alone, written by render's writers."""
        from connc.render.compose import write_bundle

        out = self.workdir / "bundle"
        write_bundle(out, "connc-check", [resolved])
        return out

    def run(self, bundle: Path, args: list[str], *, stdin: str | None = None
            ) -> subprocess.CompletedProcess[str]:
        """`args` after `. BUNDLE/env`, in an environment of the bundle's settings alone."""
        script = '. "$0/env" && exec "$@"'
        process = subprocess.Popen(
            ["sh", "-c", script, str(bundle), *args], env=self._tool_env(),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)  # a terminal's Ctrl-C is ours to handle, not the tool's
        try:
            stdout, stderr = process.communicate(stdin, timeout=2 * self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # git's ssh or http helpers too
            process.communicate()
            raise ProbeFailure(f"timeout: {args[0]} did not finish within "
                               f"{2 * self.timeout:g} s") from None
        return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)

    def _tool_env(self) -> dict[str, str]:
        """This environment without the user's own credentials and tool configuration.

        A check must not pass thanks to the checker's ~/.netrc, ssh agent, git helpers or
        `insteadOf` rewrites; trust settings (GIT_SSL_CAINFO, SSL_CERT_FILE, proxies) stay.
        """
        home = self.workdir / "home"
        home.mkdir(mode=0o700, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not _USER_CONFIG.fullmatch(k)}
        env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
                   GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
        return env


_USER_CONFIG = re.compile(
    r"GIT_CONFIG_(COUNT|KEY_\d+|VALUE_\d+|PARAMETERS)|GIT_CONFIG|GIT_ASKPASS|SSH_ASKPASS"
    r"|SSH_AUTH_SOCK|GIT_SSH|GIT_SSH_COMMAND|KUBECONFIG|DOCKER_CONFIG|NETRC")


def probe(resolved: Resolved, context: Context) -> Result:
    from connc.render import git as git_writer
    from connc.toolprobes import git, kubernetes  # they import this module

    probes: dict[str, Callable[[Resolved, Context], Result]] = {
        "github-app": github_app, "container-registry": registry,
        "kubernetes": kubernetes, "packages": packages,
    }
    # github-app is a git type for render (its token is a git credential); here it is minted.
    probes.update({t: git for t in git_writer.TYPES - {"github-app"}})
    return probes[resolved.type](resolved, context)


# --- HTTP ----------------------------------------------------------------------------------


class _Auth(requests.auth.AuthBase):
    """Basic, bearer or nothing. Always passing an auth object also stops requests from
    adding a ~/.netrc entry of the checker's own."""

    def __init__(self, basic: tuple[str, str] | None = None, bearer: str | None = None) -> None:
        self._basic, self._bearer = basic, bearer

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self._basic is not None:
            signed: requests.PreparedRequest = requests.auth.HTTPBasicAuth(*self._basic)(request)
            return signed
        if self._bearer is not None:
            request.headers["Authorization"] = f"Bearer {self._bearer}"
        return request

    def __repr__(self) -> str:
        return "_Auth(**********)"


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: Any = None  # parsed JSON when asked for and readable


def http_get(url: str, context: Context, *, basic: tuple[str, str] | None = None,
             bearer: str | None = None, params: dict[str, str] | None = None,
             headers: dict[str, str] | None = None, verify: str | bool | None = None,
             cert: tuple[str, str] | None = None, read_json: bool = False) -> Answer:
    """One GET with timeouts; redirects followed (requests drops the credential when the host
    changes). Raises ProbeFailure when no HTTP answer came back."""
    host = urlsplit(url).hostname or url
    if urlsplit(url).scheme == "http" and not is_loopback(host):
        raise ProbeFailure(f"refused: plain http to {host} would send the credential in clear")
    failure = None
    try:
        with requests.Session() as session:
            session.max_redirects = 5
            response = session.get(
                url, params=params, headers={"User-Agent": USER_AGENT, **(headers or {})},
                auth=_Auth(basic, bearer), timeout=(context.timeout, context.timeout),
                verify=ca_bundle() if verify is None else verify, cert=cert, stream=True)
            with response:
                body = _json(response) if read_json and response.status_code == 200 else None
                return Answer(response.status_code, response.headers, body)
    except requests.exceptions.SSLError as error:
        # The SSL error text is OpenSSL's reason, never request data; only its kind is used.
        failure = _tls_failure(str(error), host)
    except requests.exceptions.Timeout:
        failure = f"timeout: no answer from {host} within {context.timeout:g} s"
    except requests.exceptions.ConnectionError:
        failure = f"unreachable: cannot connect to {host} (refused, no route, or unknown name)"
    except requests.exceptions.TooManyRedirects:
        failure = f"too many redirects from {host}"
    except requests.exceptions.RequestException:
        failure = f"the request to {host} failed"
    raise ProbeFailure(failure)  # outside the except blocks: no requests exception rides along


def _json(response: requests.Response) -> Any:
    try:
        return json.loads(response.raw.read(_BODY_LIMIT, decode_content=True))
    except (ValueError, OSError, requests.exceptions.RequestException):
        return None


def _tls_failure(text: str, host: str) -> str:
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return (f"TLS error: the certificate of {host} is not trusted (for a private CA set "
                f"REQUESTS_CA_BUNDLE or SSL_CERT_FILE)")
    return f"TLS error: the handshake with {host} failed (a refused client certificate?)"


def status_failure(status: int) -> str:
    if status in (401, 403):
        return f"auth refused (HTTP {status})"
    if status == 404:
        return "not found (HTTP 404)"
    if status == 407:
        return "a proxy asks for authentication (HTTP 407)"
    if status == 429:
        return "rate limited (HTTP 429)"
    if status >= 500:
        return f"server error (HTTP {status})"
    return f"unexpected answer (HTTP {status})"


def printable(value: object, limit: int = 80) -> str:
    """A short server-supplied name (a version, a username) safe to print on one line."""
    text = "".join(c for c in str(value) if c.isprintable())
    return text[:limit]


# --- container registry --------------------------------------------------------------------

_DOCKER_HUB = frozenset({"index.docker.io", "docker.io", "registry-1.docker.io",
                         "registry.hub.docker.com"})


def registry_base(registry: str) -> str:
    """scheme://host[:port] of the registry API. An explicit scheme wins; else http on
    loopback (where registries run without TLS, as docker allows) and https elsewhere."""
    if "://" in registry:
        parts = urlsplit(registry)
        scheme, netloc = parts.scheme, parts.netloc
    else:
        scheme, netloc = "", registry.split("/", 1)[0]
    hostname = urlsplit(f"//{netloc}").hostname or netloc
    if hostname in _DOCKER_HUB:
        return "https://registry-1.docker.io"  # where `docker login` sends Docker Hub's
    return f"{scheme or ('http' if is_loopback(hostname) else 'https')}://{netloc}"


def registry(resolved: Resolved, context: Context) -> Result:
    """What `docker login` does: GET /v2/, answer its challenge, expect 200."""
    url = registry_base(str(resolved.spec["registry"])) + "/v2/"
    username, password = resolved.required("username", "password")
    first = http_get(url, context)
    if first.status == 200:
        again = http_get(url, context, basic=(username, password))
        if again.status != 200:
            return Result(False, status_failure(again.status), url)
        return Result(True, "the registry allows anonymous access and did not refuse the "
                            "credential (that is all it can prove)", url)
    if first.status != 401:
        return Result(False, status_failure(first.status), url)
    scheme, challenge = _challenge(first.headers.get("WWW-Authenticate", ""))
    if scheme == "basic":
        answer = http_get(url, context, basic=(username, password))
        if answer.status != 200:
            return Result(False, status_failure(answer.status), url)
        return Result(True, "credential accepted (HTTP Basic)", url)
    if scheme == "bearer" and challenge.get("realm"):
        return _registry_token(url, challenge, (username, password), context)
    return Result(False, "the registry answered 401 without a challenge connc understands", url)


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', rest))


def _registry_token(url: str, challenge: dict[str, str], basic: tuple[str, str],
                    context: Context) -> Result:
    """The token flow of Docker Hub and registries with a token service."""
    realm = challenge["realm"]
    params = {key: challenge[key] for key in ("service", "scope") if challenge.get(key)}
    params["account"] = basic[0]
    issued = http_get(realm, context, basic=basic, params=params, read_json=True)
    realm_host = urlsplit(realm).hostname or realm
    if issued.status != 200:
        return Result(False, f"the token service {realm_host}: {status_failure(issued.status)}",
                      url)
    body = issued.body if isinstance(issued.body, dict) else {}
    token = body.get("token") or body.get("access_token")  # distribution's spec allows either
    if not isinstance(token, str) or not token:
        return Result(False, f"the token service {realm_host} answered without a token", url)
    answer = http_get(url, context, bearer=token)
    if answer.status != 200:
        return Result(False, f"the registry refused the token from {realm_host}: "
                             f"{status_failure(answer.status)}", url)
    return Result(True, f"credential accepted (a token from {realm_host}, accepted by the "
                        f"registry)", url)


# --- packages ------------------------------------------------------------------------------


def packages(resolved: Resolved, context: Context) -> Result:
    spec = resolved.spec
    url = str(spec["url"])
    if spec["format"] == "npm":
        return _npm_whoami(resolved, url, context)
    # pip and maven send the credential with the request; a bad one gets 401 from Nexus,
    # Artifactory, GitLab, devpi and most indexes, even where anonymous reads are allowed.
    answer = http_get(url, context, basic=_user_password(resolved))
    if answer.status >= 300:
        return Result(False, status_failure(answer.status), url)
    what = "the repository" if spec["format"] == "maven" else "the index"
    return Result(True, f"{what} answered HTTP {answer.status} with the credential", url)


def _npm_whoami(resolved: Resolved, url: str, context: Context) -> Result:
    whoami = url.rstrip("/") + "/-/whoami"
    token = resolved.secret("token")
    if token:
        answer = http_get(whoami, context, bearer=token, read_json=True)
    else:
        answer = http_get(whoami, context, basic=_user_password(resolved), read_json=True)
    if answer.status != 200:
        return Result(False, status_failure(answer.status), whoami)
    name = answer.body.get("username") if isinstance(answer.body, dict) else None
    who = f" as {printable(name)}" if isinstance(name, str) and name else ""
    return Result(True, f"npm whoami: authenticated{who}", whoami)


def _user_password(resolved: Resolved) -> tuple[str, str]:
    username, password = resolved.required("username", "password")
    return username, password


# --- GitHub App ----------------------------------------------------------------------------


def github_app(resolved: Resolved, context: Context) -> Result:
    """Mint an installation token (metadata: read only, the least any App holds), revoke it."""
    from connc.github import GitHubApp, revoke_installation_token
    from connc.render.github_tokens import issuer

    spec = resolved.spec
    key = Secret(resolved.required("privateKey")[0])
    installation = int(spec["installationId"])
    app = GitHubApp(spec["apiUrl"], issuer(spec), key, connection=resolved.id,
                    timeout=context.timeout, max_attempts=2, max_wait=context.timeout)
    token = app.mint_installation_token(installation, None, {"metadata": "read"})
    target = f"{str(spec['apiUrl']).rstrip('/')}/app/installations/{installation}"
    revoked = "revoked it"
    try:
        revoke_installation_token(spec["apiUrl"], token.token, connection=resolved.id,
                                  timeout=context.timeout, max_attempts=2)
    except ConncError:  # the check itself succeeded; say what is left behind
        revoked = "could not revoke it (it expires within the hour)"
    return Result(True, f"minted an installation token (metadata: read) and {revoked}", target)
