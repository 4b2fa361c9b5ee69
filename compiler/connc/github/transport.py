"""Requests to the GitHub API: the base URL, retries with backoff, rate limits, pagination
kept within the API, and failures as messages that name their subject (`connection 'x'`,
`pull request 12 of octo/repo`).

Every request goes through `connc.http` (deadline, URL policy, no redirect). A bearer
credential travels only in `BearerAuth`, which records what it sent so that an echo of it can
be redacted (`redaction`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from connc import __version__, http
from connc.errors import GitHubError
from connc.github.redaction import what_github_said

if TYPE_CHECKING:
    import requests

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
USER_AGENT = f"connc/{__version__}"

_BACKOFF_BASE = 1.0  # seconds before the 2nd attempt; doubles per attempt
_BACKOFF_CAP = 16.0
_SECONDARY_RATE_LIMIT_WAIT = 60.0  # GitHub: without retry-after, "wait at least one minute"
# Pages of a list followed at most: 10,000 items, more than any list connc reads has; a bound
# all the same (a `next` that never ends).
MAX_PAGES = 100
# owner/name, as it may go in a request's path.
REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


class BearerAuth:
    """requests auth hook, the one source of the Authorization header (connc.http's session
    ignores ~/.netrc); it records what it sent, so that an echo of it can be redacted."""

    __slots__ = ("_make", "_sent")

    def __init__(self, make: Callable[[], str]) -> None:
        self._make = make
        self._sent: list[str] = []

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        credential = self._make()
        self._sent.append(credential)
        request.headers["Authorization"] = f"Bearer {credential}"
        return request

    def secrets_sent(self) -> list[str]:
        return list(self._sent)

    def __repr__(self) -> str:
        return "BearerAuth(**********)"


class Client:
    """Requests with timeouts, retries and backoff, and messages that name their subject
    (`connection 'x'`, `pull request 12 of octo/repo`)."""

    def __init__(self, api_url: str, subject: str, timeout: float, max_attempts: int,
                 max_wait: float, sleep: Callable[[float], None], clock: Callable[[], float]) -> None:
        self.api_url = (api_url or DEFAULT_API_URL).rstrip("/")
        parts = urlsplit(self.api_url)
        # Shown in messages: never any user:password@ that may sit in a URL.
        self.display_url = f"{parts.scheme}://{parts.hostname or ''}" + (
            f":{parts.port}" if parts.port else "") + parts.path
        self.subject = subject
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.max_wait = max_wait
        self.sleep = sleep
        self.clock = clock
        self.attempts = 0

    def send(self, method: str, path: str, auth: BearerAuth, body: dict[str, Any] | None,
             *, what: str, max_bytes: int = http.DEFAULT_MAX_BYTES) -> http.Answer:
        """The first answer not worth retrying, or the last one. Raises when GitHub cannot
        be reached, or when a rate limit outlasts `max_wait`."""
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": USER_AGENT,
        }
        waited = 0.0
        for attempt in range(1, self.max_attempts + 1):
            self.attempts = attempt
            failure: http.Failure | None = None
            response: http.Answer | None = None
            try:
                # No redirects: a bearer credential goes to the API host and nowhere else.
                # `timeout` bounds each attempt as a whole (http's watchdog), and an enclosing
                # `http.limits` (connc check) ends it sooner.
                response = http.request(method, self.api_url + path, headers=headers,
                                        json_body=body, auth=auth, timeout=self.timeout,
                                        max_bytes=max_bytes)
            except http.Failure as error:
                failure = error
            if failure is not None and failure.kind == "cancelled":
                raise GitHubError(f"{self.subject}: cannot {what}: interrupted")
            if failure is not None and failure.kind == "tls":  # a missing CA: no retry
                raise GitHubError(
                    f"{self.subject}: TLS verification of "
                    f"{self.display_url} failed; for a private CA set REQUESTS_CA_BUNDLE or "
                    "SSL_CERT_FILE"
                )
            if failure is not None and failure.kind == "insecure":
                raise GitHubError(f"{self.subject}: cannot {what} at {self.display_url}: "
                                  f"plain http is allowed to a loopback host only")
            if failure is not None and failure.kind in ("invalid", "redirects", "redirect"):
                raise GitHubError(f"{self.subject}: cannot {what} at "
                                  f"{self.display_url}: invalid apiUrl")
            # No wait may outlast max_wait, nor the enclosing deadline (connc check's probe).
            left = http.remaining()
            budget = self.max_wait - waited if left is None else min(self.max_wait - waited,
                                                                      left)
            if response is None:
                # A POST whose answer was lost may have minted a token anyway; it dies
                # within the hour, which is acceptable next to failing the render.
                reason = (f"no answer within {self.timeout:g} s"
                          if failure is not None and failure.kind == "timeout"
                          else "connection failed")
                delay = _backoff(attempt)
                if attempt == self.max_attempts or delay > budget:
                    raise GitHubError(
                        f"{self.subject}: cannot {what}: {reason} "
                        f"({self.display_url}, {_attempts(attempt)})"
                    )
            else:
                retry = self._retry_delay(response, attempt)
                if retry is None or attempt == self.max_attempts:
                    return response
                delay, reset_at, rate_limited = retry
                if delay > budget:
                    if rate_limited:
                        raise self._rate_limited(response, what, delay, reset_at)
                    return response
            self.sleep(delay)  # http.pause by default: an interrupt cuts it short
            waited += delay
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry_delay(self, response: http.Answer, attempt: int
                     ) -> tuple[float, float | None, bool] | None:
        """(seconds to wait, reset epoch if known, is a rate limit) when worth retrying."""
        status = response.status
        h = response.headers
        retry_after = _number(h.get("retry-after"))
        if status in (403, 429):
            if retry_after is not None:
                return max(0.0, retry_after), self.clock() + retry_after, True
            if h.get("x-ratelimit-remaining") == "0":
                reset = _number(h.get("x-ratelimit-reset"))
                if reset is None:
                    return _backoff(attempt), None, True
                # +1 s: the reset epoch has whole-second resolution.
                return max(0.0, reset - self.clock() + 1), reset, True
            if status == 429 or "rate limit" in what_github_said(response, []).lower():
                return _SECONDARY_RATE_LIMIT_WAIT, None, True
            return None  # a plain 403 is a refusal, not a rate limit
        if status >= 500:
            return (_backoff(attempt) if retry_after is None else max(0.0, retry_after)), None, False
        return None

    def _rate_limited(self, response: http.Answer, what: str, delay: float,
                      reset_at: float | None) -> GitHubError:
        when = ""
        try:  # a reset the server sets past year 9999 is not shown, and ends nothing
            stamp = dt.datetime.fromtimestamp(reset_at, dt.UTC) if reset_at is not None else None
        except (OverflowError, ValueError, OSError):
            stamp = None
        if stamp is not None:
            when = f" until {stamp.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        return GitHubError(
            f"{self.subject}: GitHub rate-limits these requests{when} (HTTP "
            f"{response.status}, {delay:.0f} s from now), longer than connc waits "
            f"({self.max_wait:g} s); cannot {what}, retry after the reset"
        )

    def unexpected(self, response: http.Answer, what: str, said: str) -> GitHubError:
        status = response.status
        if status in (403, 429) and self._retry_delay(response, self.max_attempts) is not None:
            reason = f"still rate-limited after {_attempts(self.attempts)}"
        elif status >= 500:
            reason = f"GitHub failed with HTTP {status} ({_attempts(self.attempts)})"
        else:
            reason = f"unexpected HTTP {status}"
        return GitHubError(
            f"{self.subject}: cannot {what} at {self.display_url}: {reason}{said}"
        )

    def next_page(self, response: http.Answer) -> str | None:
        """The path of the `rel="next"` page, which must be at the same API: the token is
        sent there and nowhere else."""
        url = http.next_link(response.headers.get("Link"))
        if not url:
            return None
        if not url.startswith(self.api_url + "/"):
            raise GitHubError(f"{self.subject}: GitHub's next page is not at "
                              f"{self.display_url}; not following it with the token")
        return url[len(self.api_url):]

    def enterprise_hint(self) -> str:
        if self.api_url == DEFAULT_API_URL or self.api_url.endswith("/api/v3"):
            return ""
        return " (for GitHub Enterprise Server apiUrl is https://HOST/api/v3)"


def _backoff(attempt: int) -> float:
    return float(min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (attempt - 1)))


def _attempts(n: int) -> str:
    return "1 attempt" if n == 1 else f"{n} attempts"


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None  # an HTTP-date retry-after: GitHub sends seconds; fall back to backoff
    return number if math.isfinite(number) else None  # "inf", "nan": no number of seconds
