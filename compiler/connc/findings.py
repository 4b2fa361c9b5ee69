"""Findings are values: where a problem is, its stable code, how bad it is, what to do.

Every code connc can emit is listed in `CODES`, and `docs/checks.md` documents each one
(a test keeps the two in step). Codes are stable: a code is never reused for another check.

A finding's text is made printable when the finding is made (`printable`): a message may quote
what the user wrote (an unknown owner, a drifting setting, a file name), and what looks like a
secret is shown as its kind, a control character as U+FFFD, in every format, whichever check
wrote the message.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Collection, Iterable

from connc.secrets import redact


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclasses.dataclass(frozen=True, order=True)
class Finding:
    path: str  # relative to the repository root, with forward slashes
    line: int  # 1-based; 1 when a finding concerns a whole file
    column: int  # 1-based
    code: str
    severity: Severity
    message: str

    def __post_init__(self) -> None:
        # Here, not in each check or reporter: no message can forget it. A path or message
        # quotes what a file holds (its name, a YAML key): redacted and printable, so that no
        # secret shows and no newline or escape sequence forges a line of a CI log.
        object.__setattr__(self, "path", printable(self.path))
        object.__setattr__(self, "message", printable(self.message))

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
        }


E, W = Severity.ERROR, Severity.WARNING

# code: (default severity, short title). The title is the heading in docs/checks.md.
CODES: dict[str, tuple[Severity, str]] = {
    # 0xx: the file itself
    "CONNC001": (E, "YAML syntax error"),
    "CONNC002": (E, "duplicate key"),
    "CONNC003": (E, "file cannot be read"),
    "CONNC004": (E, "empty file"),
    "CONNC005": (E, "several YAML documents in one file"),
    "CONNC006": (E, "file too large"),
    "CONNC007": (E, "symlink refused"),
    "CONNC008": (E, "not a regular file"),
    "CONNC009": (E, "alias expansion too large"),
    "CONNC010": (E, "not UTF-8 text"),
    "CONNC011": (E, "members.yaml missing"),
    "CONNC012": (E, "misnamed file"),
    "CONNC013": (W, "byte-order mark"),
    "CONNC014": (E, ".sops.yaml missing or invalid"),
    "CONNC015": (E, "line break that editors do not show"),
    "CONNC016": (E, "name another file has on a case-insensitive file system"),
    "CONNC017": (E, ".gitattributes rewrites a connc file"),
    # 1xx: the document against its model
    "CONNC101": (E, "unknown field"),
    "CONNC102": (E, "invalid value"),
    "CONNC103": (E, "missing field"),
    "CONNC104": (E, "wrong apiVersion or kind"),
    "CONNC105": (E, "file name does not match metadata.id"),
    "CONNC106": (E, "duplicate id"),
    "CONNC107": (E, "insecure or malformed URL"),
    "CONNC108": (W, "TLS verification disabled"),
    "CONNC109": (E, "invalid certificate data"),
    "CONNC111": (E, "spec still a placeholder of connc new"),
    "CONNC110": (E, "knownHosts pins another host"),
    # 2xx: references between files
    "CONNC201": (E, "unknown owner"),
    "CONNC202": (E, "unknown scope member"),
    "CONNC203": (E, "unknown team"),
    "CONNC204": (E, "owner not in team"),
    "CONNC205": (E, "unknown connection"),
    "CONNC206": (E, "unknown team member"),
    "CONNC207": (E, "option not valid for this connection type"),
    "CONNC208": (E, "connection used twice"),
    "CONNC209": (W, "members ignored for this visibility"),
    "CONNC210": (E, "unknown GitHub App permission"),
    "CONNC211": (E, "permission level GitHub does not offer"),
    "CONNC212": (E, "github-app use without permissions"),
    "CONNC213": (E, "repository given as owner/name"),
    "CONNC214": (E, "forge account of two users"),
    "CONNC215": (E, "unknown admin"),
    # 3xx: scope of use
    "CONNC301": (E, "private connection used by another owner's pipeline"),
    "CONNC302": (E, "custom connection used by a pipeline outside its members"),
    # 4xx: encryption
    "CONNC401": (E, "file not encrypted"),
    "CONNC402": (E, "plaintext value in credential"),
    "CONNC403": (E, "secret-looking plaintext"),
    "CONNC404": (E, "encrypted value outside credential"),
    "CONNC405": (E, "recipients drift from .sops.yaml"),
    "CONNC406": (E, "no .sops.yaml creation rule matches"),
    "CONNC407": (E, "encryption settings drift from .sops.yaml"),
    "CONNC408": (E, "recipient outside scope"),
    "CONNC409": (W, "principal in scope has no recipient"),
    "CONNC410": (E, "credential copied from another file"),
    "CONNC411": (E, "encrypted value of the wrong type"),
    "CONNC412": (E, "malformed sops metadata"),
    "CONNC413": (W, "credential not sealed"),
    "CONNC414": (E, "pipeline cannot decrypt a connection it uses"),
    # 5xx: expiry
    "CONNC501": (E, "credential expired"),
    "CONNC502": (W, "credential expires soon"),
    # 6xx: content checks (--decrypt)
    "CONNC601": (E, "cannot decrypt"),
    "CONNC602": (E, "credential field empty"),
    "CONNC603": (E, "private key does not parse"),
    "CONNC604": (E, "client certificate does not match its key"),
    "CONNC605": (E, "credential value not valid base64 PEM"),
    "CONNC606": (E, "control character in credential"),
    "CONNC607": (E, "credential still a placeholder"),
    "CONNC608": (E, "seal does not match the file"),
    "CONNC609": (E, "credential value a tool cannot carry"),
    "CONNC610": (W, "seal wider than the file"),
}


def dotted(path: tuple[str | int, ...]) -> str:
    """A document path as people write it: metadata.id, uses[2].connection."""
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text or "(document)"


def printable(text: str, limit: int | None = None) -> str:
    """Text as a message may show it: what looks like a secret named, not shown (before it is
    cut, so that no part of one shows); control characters (a newline that would forge a line
    of output, an escape sequence) as U+FFFD; at most `limit` characters."""
    shown = "".join(ch if ch.isprintable() else "\N{REPLACEMENT CHARACTER}"
                    for ch in redact(text))
    return shown if limit is None else shown[:limit]


def suggest(word: str, candidates: Iterable[str]) -> str:
    """"; did you mean `x`?" for a near miss (difflib's ratio of at least 0.6), else nothing.

    A few candidates are compared one by one. Many (a members.yaml of 45,000 users, against
    which each of 45,000 unknown team members is checked) are indexed first, once per
    collection, and only the few that differ from `word` by a typo are compared: otherwise
    each finding would cost a comparison with every name, and a file of bad names would take
    time quadratic in its size.
    """
    import difflib

    pool = candidates if isinstance(candidates, Collection) else list(candidates)
    shortlist = list(pool) if len(pool) <= _FEW else _NearMisses.of(pool).shortlist(word)
    close = difflib.get_close_matches(word, shortlist, n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


_FEW = 32  # candidates compared one by one; more are indexed first
_SHORTLIST = 16  # at most this many of an index's near misses are compared
_FOLDED = 16  # characters of a name the index reads: memory linear in the number of names


class _NearMisses:
    """Names by each form they take with case, `-`, `_` and at most one character left out:
    two names that share a form differ by one typo each (a letter missing, added, changed or
    two swapped). The last few indexes are kept, by the identity of their collection: the
    checks of one repository ask about the same users, teams and ids again and again."""

    _recent: list[_NearMisses] = []

    def __init__(self, names: Collection[str]) -> None:
        self.names, self.size = names, len(names)
        self.by_form: dict[str, list[str]] = {}
        for name in names:
            for form in self._forms(name):
                self.by_form.setdefault(form, []).append(name)

    @classmethod
    def of(cls, names: Collection[str]) -> _NearMisses:
        for index in cls._recent:
            if index.names is names and index.size == len(names):
                return index
        index = cls(names)
        cls._recent = [index, *cls._recent[:3]]
        return index

    @staticmethod
    def _forms(name: str) -> list[str]:
        folded = name.lower().replace("-", "").replace("_", "")[:_FOLDED]
        return [folded, *dict.fromkeys(folded[:i] + folded[i + 1:] for i in range(len(folded)))]

    def shortlist(self, word: str) -> list[str]:
        found: dict[str, None] = {}
        for form in self._forms(word):  # its own form first: the closest names
            for name in self.by_form.get(form, ()):
                found[name] = None
                if len(found) == _SHORTLIST:
                    return list(found)
        return list(found)


def finding(path: str, line: int, column: int, code: str, message: str,
            severity: Severity | None = None) -> Finding:
    default, _title = CODES[code]
    return Finding(path, max(line, 1), max(column, 1), code, severity or default, message)


def has_errors(findings: list[Finding], *, strict: bool = False) -> bool:
    return any(f.severity is Severity.ERROR or strict for f in findings)


# GitHub Actions workflow commands (`::error file=...::message`, `::add-mask::value`), escaped
# as the runner unescapes them (actions/runner ActionCommand.cs, `UnescapeData`: %0D, %0A,
# then %25; `UnescapeProperty` also %3A and %2C), which is the toolkit's `escapeData` /
# `escapeProperty`. `%` goes first, so that a `%25` or `%0A` inside a value comes back as
# written: unescaped, `::add-mask::a%25b` would register `a%b` and leave the secret `a%25b` in
# clear. Here, in the core, because validate's annotations and render's masks both need it.


def escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def workflow_command(name: str, data: str, **properties: str | int) -> str:
    """One `::name key=value,...::data` line, every part escaped for the runner."""
    props = ",".join(f"{key}={escape_property(str(value))}" for key, value in properties.items())
    return f"::{name}{' ' + props if props else ''}::{escape_data(data)}\n"
