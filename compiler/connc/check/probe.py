"""What the probes of `connc check` share: the `Probe` protocol, its context and result.

A probe takes one decrypted connection (a render `Resolved`) and returns a `Result`: ok or
not, what was proven (or why not), and the URL it asked. The probes that have a real client
(git, kubectl) render a one-connection bundle with render's own writers and run the client
after `. BUNDLE/env`, as a pipeline step would; the others make the one HTTP request their
client would make first (`docker login`'s `/v2/`, `npm whoami`, an index GET), and github-app
mints a token with connc's GitHub client. One module per service family, each with `probe`,
side by side with render's writers, named by its types' entries in `schema.connection_types`.

Messages are ours, chosen from status codes and known error patterns: never a response body,
a tool's stderr or an exception's text, any of which could quote a credential.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from connc import __version__, http, process, urls
from connc.render.context import Resolved

if TYPE_CHECKING:
    from connc.identity.ci import Source

USER_AGENT = f"connc-check/{__version__}"
_BODY_LIMIT = 64 * 1024  # the JSON answers read here are tiny; never buffer a whole index


@dataclasses.dataclass(frozen=True)
class Result:
    ok: bool
    message: str
    target: str


class ProbeFailure(Exception):
    """No usable answer (TLS, unreachable, timeout, a tool that failed); the text is safe.
    `target`: the URL asked, when the failure is about one."""

    def __init__(self, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.target = target


@dataclasses.dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


@dataclasses.dataclass(frozen=True)
class Context:
    workdir: Path  # private (0700) to one connection, removed after its probe
    timeout: float  # --timeout: the probe's whole budget, in seconds
    # By when the probe ends (None: `timeout` for each wait), and its `cancel`, set on an
    # interrupt: requests end, tool runs are killed.
    deadline: process.Deadline | None = None
    # Every credential a request sent (and a token the probe was given): what a reply that
    # echoes one must never get printed with (`connc check --reach` redacts these).
    sent: set[str] = dataclasses.field(default_factory=set)
    # Where secretless connections get an ID token: the CI job this runs in, or
    # `--id-token-file`; None (not in CI) skips them.
    identity: Source | None = dataclasses.field(default_factory=lambda: ci_identity())

    def remaining(self) -> float:
        return self.timeout if self.deadline is None else self.deadline.remaining()

    def bundle(self, resolved: Resolved) -> Path:
        """A bundle with this connection alone, written by render's writers."""
        from connc.render.compose import write_bundle

        out = self.workdir / "bundle"
        write_bundle(out, "connc-check", [resolved], identity=self.identity)
        return out

    def run(self, bundle: Path, args: list[str], *, stdin: str | None = None) -> Ran:
        """`args` after `. BUNDLE/env`, in an environment of the bundle's settings alone;
        killed (with its process group) at the probe's deadline or on an interrupt."""
        script = '. "$0/env" && exec "$@"'
        seconds = self.remaining()
        cancel = self.deadline.cancel if self.deadline is not None else None
        if cancel is not None and cancel.is_set():
            raise ProbeFailure("interrupted")
        if seconds <= 0:
            raise ProbeFailure(f"timeout: the probe did not finish within {self.timeout:g} s")
        running = process.Process(["sh", "-c", script, str(bundle), *args],
                                  env=self._tool_env(),
                                  stdin=stdin.encode() if stdin is not None else None)
        try:
            done = running.wait(seconds, cancel=cancel)
        except process.Timeout:
            raise ProbeFailure(f"timeout: {args[0]} did not finish within the probe's "
                               f"{self.timeout:g} s") from None
        except process.Cancelled:
            raise ProbeFailure("interrupted") from None
        return Ran(done.returncode, done.stdout.decode(errors="replace"),
                   done.stderr.decode(errors="replace"))

    def _tool_env(self) -> dict[str, str]:
        """This environment without the user's own credentials and tool configuration.

        A check must not pass thanks to the checker's ~/.netrc, ssh agent, git helpers or
        `insteadOf` rewrites; trust settings (GIT_SSL_CAINFO, SSL_CERT_FILE, proxies) stay,
        except that loopback hosts are added to NO_PROXY: plain http is allowed there only
        because it stays on this machine, and curl (git's http) would otherwise proxy it.
        """
        home = self.workdir / "home"
        home.mkdir(mode=0o700, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not _USER_CONFIG.fullmatch(k)}
        env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
                   GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
        for name in ("NO_PROXY", "no_proxy"):
            current = env.get(name, "")
            # curl honours "*" only as the whole value: appending would turn proxying back on.
            if current.strip() != "*":
                env[name] = ",".join(filter(None, (current, _LOOPBACK_NO_PROXY)))
        return env


def ci_identity() -> Source | None:
    """The CI job's identity when this runs in GitHub Actions or GitLab CI, else None."""
    if "true" not in (os.environ.get("GITHUB_ACTIONS"), os.environ.get("GITLAB_CI")):
        return None
    from connc.identity.ci import Environment

    return Environment()


_LOOPBACK_NO_PROXY = "localhost,.localhost,127.0.0.1,127.0.0.0/8,::1"
_USER_CONFIG = re.compile(
    r"GIT_CONFIG_(COUNT|KEY_\d+|VALUE_\d+|PARAMETERS)|GIT_CONFIG|GIT_ASKPASS|SSH_ASKPASS"
    r"|SSH_AUTH_SOCK|GIT_SSH|GIT_SSH_COMMAND|KUBECONFIG|DOCKER_CONFIG|NETRC")


class Probe(Protocol):
    """A module that checks connections of the types that name it as their probe
    (`schema.connection_types`; `check/git.py`, ...)."""

    def probe(self, resolved: Resolved, context: Context) -> Result: ...


# --- HTTP ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    headers: Any  # case-insensitive mapping
    body: Any = None  # parsed JSON when asked for and readable


class _Credential:
    """requests auth hook: HTTP Basic, a bearer token, or nothing."""

    __slots__ = ("_basic", "_bearer")

    def __init__(self, basic: tuple[str, str] | None, bearer: str | None) -> None:
        self._basic, self._bearer = basic, bearer

    def __call__(self, request: Any) -> Any:
        if self._basic is not None:
            from requests.auth import HTTPBasicAuth

            return HTTPBasicAuth(*self._basic)(request)
        if self._bearer is not None:
            request.headers["Authorization"] = f"Bearer {self._bearer}"
        return request

    def __repr__(self) -> str:
        return "_Credential(**********)"


_FAILURE_PREFIX = {"tls": "TLS error: ", "timeout": "timeout: ", "connect": "unreachable: ",
                   "redirect": "refused: ", "insecure": "refused: ", "cancelled": "interrupted: "}


def http_get(url: str, context: Context, *, basic: tuple[str, str] | None = None,
             bearer: str | None = None, params: dict[str, str] | None = None,
             headers: dict[str, str] | None = None, verify: str | bool | None = None,
             cert: tuple[str, str] | None = None, read_json: bool = False,
             max_bytes: int = _BODY_LIMIT) -> Answer:
    """One GET, over by the probe's deadline (the `http.limits` the probe runs in).
    Redirects are followed within the URL's origin only (connc.http): a redirect elsewhere
    fails the probe, since another host's answer would prove nothing about the credential.
    Raises ProbeFailure when no HTTP answer came back. With `read_json`, `body` is the
    answer parsed (whatever its status), else None."""
    return http_send("GET", url, context, basic=basic, bearer=bearer, params=params,
                     headers=headers, verify=verify, cert=cert, read_json=read_json,
                     max_bytes=max_bytes)


def http_send(method: str, url: str, context: Context, *,
              basic: tuple[str, str] | None = None, bearer: str | None = None,
              params: dict[str, str] | None = None, headers: dict[str, str] | None = None,
              verify: str | bool | None = None, cert: tuple[str, str] | None = None,
              json_body: Any = None, read_json: bool = False,
              max_bytes: int = _BODY_LIMIT) -> Answer:
    """`http_get` for any method (a POST with a JSON body: kube's rules review)."""
    host = urls.host_of(url)
    if url.startswith("http://") and urls.plain_http_refused("http", host):
        raise ProbeFailure(f"refused: plain http to {host} would send the credential in clear")
    # A Basic header carries `user:password`: what a service could echo of it, as sent.
    context.sent.update(value for value in (basic[1] if basic else None, bearer,
                                            ":".join(basic) if basic else None) if value)
    try:
        answer = http.request(
            method, url, params=params, headers={"User-Agent": USER_AGENT, **(headers or {})},
            auth=_Credential(basic, bearer), timeout=context.timeout, verify=verify, cert=cert,
            json_body=json_body, follow_redirects=True, max_bytes=max_bytes if read_json else 0)
    except http.Failure as failure:
        raise ProbeFailure(_FAILURE_PREFIX.get(failure.kind, "") + failure.message) from None
    body = answer.json() if read_json else None
    return Answer(answer.status, answer.headers, body)


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

