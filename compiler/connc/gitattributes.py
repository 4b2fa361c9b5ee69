"""Which `.gitattributes` lines make git rewrite a connc file between the blob and the checkout.

`connc diff` reads a revision's blobs; render reads the checkout, or a tarball `git archive`
made. An attribute that makes git rewrite a file on checkout or export makes the two differ:
`working-tree-encoding` re-encodes it (a comment's "Â…" becomes NEL, a line break to YAML),
`filter` runs any program over it (Git LFS too), `ident` and `export-subst` expand keywords,
`text`, `eol` and the older `crlf` convert line ends, `export-ignore` leaves it out. Such an
attribute on a connc path is a finding (CONNC017); unset (`-text`) or unspecified, nothing
rewrites. (`core.autocrlf` and the runner's own attributes are the machine's, not the pull
request's.)

Attributes are evaluated as git evaluates them, held to `git check-attr` by a differential
test: the `.gitattributes` of each directory from the work tree's top down to the file's own,
a deeper file before a shallower one and a later line before an earlier one; patterns as
gitignore has them (wildmatch's `*`, `?`, `[...]`, `**`; a leading `/` anchors, a pattern
without a slash matches the base name at any depth, one ending in `/` only directories);
macros (`[attr]name ...`, only in the top-level file, and git's own `binary`), `-attr` unset,
`!attr` unspecified, `attr=value`. `$GIT_DIR/info/attributes` and `core.attributesFile` belong
to the machine that checks out and are out of scope. Matching is evaluated case-sensitive and
case-insensitive (`core.ignorecase`, on by default on macOS and Windows): either rewriting a
file is a finding.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from connc import repository
from connc.findings import Finding, finding, printable

# The attributes under which git's checkout or export gives other bytes than the blob's.
REWRITING = frozenset({"working-tree-encoding", "filter", "ident", "text", "eol", "crlf",
                       "export-subst", "export-ignore"})
# The line that undoes them, as the fix names it.
UNSET_ALL = "-text -eol -crlf -filter -ident -working-tree-encoding -export-subst -export-ignore"

# True set, False unset (`-attr`), None unspecified (`!attr`), or the value of `attr=value`.
State = bool | str | None

_BLANK = b" \t\r\n"
_A_BLANK = re.compile(rb"[ \t\r\n]")
_MACRO_PREFIX = b"[attr]"
_ATTRIBUTE_NAME = re.compile(rb"[-._0-9A-Za-z]+")
_BUILTIN_MACROS = {"binary": (("diff", False), ("merge", False), ("text", False))}
_LONG_LINE = 2000  # git 2.39.1 and later ignore lines of 2048 bytes or more, older ones do not
_MAX_BYTES = 1024 * 1024  # as for any file connc reads


# ---------------------------------------------------------------------------- patterns


def _ascii_class(test: Callable[[int], bool]) -> frozenset[int]:
    return frozenset(byte for byte in range(1, 128) if test(byte))


# wildmatch's character classes, ASCII only (git's own ctype: no locale).
_CLASSES = {
    b"alnum": _ascii_class(lambda c: chr(c).isalnum()),
    b"alpha": _ascii_class(lambda c: chr(c).isalpha()),
    b"blank": frozenset(b" \t"),
    b"cntrl": _ascii_class(lambda c: c < 0x20 or c == 0x7F),
    b"digit": _ascii_class(lambda c: chr(c).isdigit()),
    b"graph": _ascii_class(lambda c: 0x21 <= c <= 0x7E),
    b"lower": _ascii_class(lambda c: chr(c).islower()),
    b"print": _ascii_class(lambda c: 0x20 <= c <= 0x7E),
    b"punct": _ascii_class(lambda c: 0x21 <= c <= 0x7E and not chr(c).isalnum()),
    b"space": frozenset(b" \t\n\r"),
    b"upper": _ascii_class(lambda c: chr(c).isupper()),
    b"xdigit": frozenset(b"0123456789abcdefABCDEF"),
}
_LOWER = frozenset(range(ord("a"), ord("z") + 1))
_SLASH, _BACKSLASH, _STAR = ord("/"), ord("\\"), ord("*")


def _lower(byte: int) -> int:
    return byte + 32 if ord("A") <= byte <= ord("Z") else byte


def _translate(pattern: bytes, *, pathname: bool, casefold: bool) -> bytes | None:
    """A wildmatch pattern as a regular expression over bytes, for `fullmatch`; None when it
    can match nothing (an unfinished `[`, an unknown class, a trailing backslash).

    `pathname`: `*`, `?` and `[...]` stop at `/`, and `**` between slashes spans directories.
    `casefold`: the text is matched lower-cased (ASCII), as git does under core.ignorecase.
    """
    out: list[bytes] = []
    i, end = 0, len(pattern)
    one = b"[^/]" if pathname else b"(?s:.)"
    while i < end:
        byte = pattern[i]
        if byte == _BACKSLASH:
            if i + 1 == end:
                return None
            # Not lower-cased, as in git: an escaped capital never matches lowered text.
            out.append(re.escape(pattern[i + 1:i + 2]))
            i += 2
        elif byte == ord("?"):
            out.append(one)
            i += 1
        elif byte == _STAR:
            stars = i
            while i < end and pattern[i] == _STAR:
                i += 1
            expression, took_slash = _stars(pattern, stars, i, pathname)
            out.append(expression)
            i += took_slash
        elif byte == ord("["):
            bracket = _bracket(pattern, i + 1, casefold)
            if bracket is None:
                return None
            members, i = bracket
            if pathname:
                members -= {_SLASH}
            out.append(_byte_class(members))
        else:
            out.append(re.escape(bytes([_lower(byte) if casefold else byte])))
            i += 1
    return b"".join(out)


def _stars(pattern: bytes, start: int, stop: int, pathname: bool) -> tuple[bytes, bool]:
    """The stars of pattern[start:stop], and whether they took the slash after them."""
    if not pathname:
        return b"(?s:.*)", False
    after = pattern[stop:stop + 2]
    spans = (stop - start >= 2 and (start == 0 or pattern[start - 1] == _SLASH)
             and (not after or after[:1] == b"/" or after == b"\\/"))
    if not spans:
        return b"[^/]*", False
    if after[:1] == b"/":
        return b"(?s:.*/)?", True  # `**/` also matches no directory at all
    return b"(?s:.*)", False


def _bracket(pattern: bytes, i: int, casefold: bool) -> tuple[set[int], int] | None:
    """The bytes a `[...]` starting at `i` (after the `[`) matches, and the index after it."""
    end = len(pattern)
    negated = i < end and pattern[i] in b"!^"
    i += negated
    members: set[int] = set()
    previous = 0  # the last single byte, which a following `-x` makes a range from
    first = True
    while True:
        if i >= end:
            return None
        byte = pattern[i]
        if byte == ord("]") and not first:
            break
        first = False
        if byte == _BACKSLASH:
            i += 1
            if i >= end:
                return None
            previous = pattern[i]
            members.add(previous)
        elif byte == ord("-") and previous and i + 1 < end and pattern[i + 1] != ord("]"):
            i += 1
            high = pattern[i]
            if high == _BACKSLASH:
                i += 1
                if i >= end:
                    return None
                high = pattern[i]
            members.update(range(previous, high + 1))
            if casefold:
                members.update(c for c in _LOWER if previous <= c - 32 <= high)
            previous = 0
        elif byte == ord("[") and pattern[i + 1:i + 2] == b":":
            close = pattern.find(b"]", i + 2)
            if close < 0:
                return None
            name = pattern[i + 2:close]
            if not name.endswith(b":") or len(name) < 2:
                members.add(byte)  # not a class after all: a literal `[`, then on from the `:`
                previous = byte
                i += 1
                continue
            cls = _CLASSES.get(name[:-1])
            if cls is None:
                return None
            members |= cls
            if casefold and name[:-1] == b"upper":
                members |= _LOWER
            previous = 0
            i = close
        else:
            previous = byte
            members.add(byte)
        i += 1
    if negated:
        members = set(range(1, 256)) - members
    return members, i + 1


def _byte_class(members: set[int]) -> bytes:
    if not members:
        return b"(?!)"
    return b"[" + b"".join(re.escape(bytes([byte])) for byte in sorted(members)) + b"]"


class _Pattern(NamedTuple):
    """A line's pattern, compiled for case-sensitive and case-insensitive matching."""

    basename_only: bool  # no slash: matches the base name, at any depth
    exact: re.Pattern[bytes] | None  # None: matches nothing
    folded: re.Pattern[bytes] | None

    @classmethod
    def parse(cls, text: bytes) -> _Pattern | None:
        """None for a line git drops: a negative pattern, or a directory-only one (`dir/`),
        which never matches a file."""
        if text.startswith(b"!") or text.endswith(b"/"):
            return None
        basename_only = b"/" not in text
        if not basename_only and text.startswith(b"/"):
            text = text[1:]  # anchored to the directory of its .gitattributes

        def compile_(casefold: bool) -> re.Pattern[bytes] | None:
            expression = _translate(text, pathname=not basename_only, casefold=casefold)
            return None if expression is None else re.compile(expression)

        return cls(basename_only, compile_(False), compile_(True))

    def matches(self, relative: bytes, basename: bytes, ignore_case: bool) -> bool:
        """`relative`: the path below the directory of the pattern's .gitattributes, and its
        last part; both lower-cased under `ignore_case`."""
        regex = self.folded if ignore_case else self.exact
        return regex is not None and \
            regex.fullmatch(basename if self.basename_only else relative) is not None

    @property
    def case_blind(self) -> bool:
        """Whether it matches lower-case text the same way under core.ignorecase."""
        return (self.exact.pattern if self.exact else None) == \
            (self.folded.pattern if self.folded else None)


# ---------------------------------------------------------------------------- files


class Source(NamedTuple):
    """A `.gitattributes` file: its path from the work tree's top, and its bytes (or why they
    cannot be had)."""

    path: str
    data: bytes
    unreadable: str | None = None

    @property
    def directory(self) -> str:
        return posixpath.dirname(self.path)


class _Line(NamedTuple):
    source: str
    number: int
    pattern: _Pattern | None  # None: a macro definition
    macro: str | None
    states: tuple[tuple[str, State], ...]


class Problem(NamedTuple):
    """A `.gitattributes` whose effect connc cannot establish: it fails closed."""

    source: str
    line: int
    message: str


def _parse(source: Source, problems: list[Problem]) -> list[_Line]:
    if source.unreadable is not None:
        problems.append(Problem(source.path, 1, source.unreadable))
        return []
    data = source.data
    if b"\0" in data:
        # git reads a blob up to its first NUL but a checked-out file line by line past it.
        problems.append(Problem(source.path, data[: data.index(b"\0")].count(b"\n") + 1,
                                "holds a NUL byte, which git reads differently in a blob and "
                                "in a file"))
        return []
    data = data.removeprefix(b"\xef\xbb\xbf")  # git skips a UTF-8 byte-order mark
    macros_allowed = source.directory == ""
    lines = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if len(raw) >= _LONG_LINE:
            problems.append(Problem(source.path, number, f"a line of {len(raw)} bytes, which "
                                    f"some versions of git read and newer ones ignore"))
            continue
        line = _parse_line(raw, source.path, number, macros_allowed)
        if line is not None:
            lines.append(line)
    return lines


def _parse_line(raw: bytes, source: str, number: int, macros_allowed: bool) -> _Line | None:
    """One line as git parses it; None for what git skips (blank, comment, invalid)."""
    text = raw.lstrip(_BLANK)
    if not text or text.startswith(b"#"):
        return None
    quoted = _unquote(text) if text.startswith(b'"') else None
    if quoted is not None:
        name, rest = quoted
        name = name.split(b"\0", 1)[0]
    else:
        size = _token_end(text)
        name, rest = text[:size], text[size:]
    macro = None
    if len(name) > len(_MACRO_PREFIX) and name.startswith(_MACRO_PREFIX):
        if not macros_allowed:
            return None  # git: "[attr]x not allowed" outside the top-level file
        macro_name = name[len(_MACRO_PREFIX):].lstrip(_BLANK)
        macro_name = macro_name[:_token_end(macro_name)]
        if not _valid_name(macro_name):
            return None
        macro = macro_name.decode("ascii")
    states = _states(rest.lstrip(_BLANK))
    if states is None:
        return None
    if macro is not None:
        return _Line(source, number, None, macro, states)
    pattern = _Pattern.parse(name)
    return None if pattern is None else _Line(source, number, pattern, None, states)


def _token_end(text: bytes) -> int:
    blank = _A_BLANK.search(text)
    return blank.start() if blank else len(text)


def _valid_name(name: bytes) -> bool:
    return not name.startswith(b"-") and _ATTRIBUTE_NAME.fullmatch(name) is not None


def _states(text: bytes) -> tuple[tuple[str, State], ...] | None:
    """`attr -attr !attr attr=value ...`; None (git drops the line) for an invalid name."""
    states: list[tuple[str, State]] = []
    while text:
        size = _token_end(text)
        token, text = text[:size], text[size:].lstrip(_BLANK)
        name, equals, value = token.partition(b"=")
        state: State = True
        if name[:1] in (b"-", b"!"):
            state = False if name[:1] == b"-" else None
            name = name[1:]
        elif equals:
            state = value.decode("utf-8", "surrogateescape")
        if not _valid_name(name):
            return None
        states.append((name.decode("ascii"), state))
    return tuple(states)


_ESCAPES = {ord("a"): 7, ord("b"): 8, ord("f"): 12, ord("n"): 10, ord("r"): 13, ord("t"): 9,
            ord("v"): 11, ord("\\"): ord("\\"), ord('"'): ord('"')}


def _unquote(text: bytes) -> tuple[bytes, bytes] | None:
    """A C-quoted pattern (`"a b"`, `\\t`, `\\303\\251`) and what follows it, or None when it
    is not well quoted (git then reads the line as if it were not quoted)."""
    out = bytearray()
    i = 1
    while i < len(text):
        byte = text[i]
        if byte == ord('"'):
            return bytes(out), text[i + 1:]
        if byte != _BACKSLASH:
            out.append(byte)
            i += 1
            continue
        escaped = text[i + 1] if i + 1 < len(text) else -1
        if escaped in _ESCAPES:
            out.append(_ESCAPES[escaped])
            i += 2
        elif ord("0") <= escaped <= ord("3") and re.fullmatch(rb"[0-7]{2}", text[i + 2:i + 4]):
            out.append(int(text[i + 1:i + 4], 8))
            i += 4
        else:
            return None
    return None


# ---------------------------------------------------------------------------- evaluation


class Decision(NamedTuple):
    """An attribute's state for a path, and the line that decided it."""

    state: State
    source: str
    line: int
    via: str | None = None  # the macro whose expansion set it


class Attributes:
    """The attributes a set of `.gitattributes` files gives paths, as `git check-attr` does."""

    def __init__(self, sources: Iterable[Source]) -> None:
        self.problems: list[Problem] = []
        parsed = [(source.directory, _parse(source, self.problems)) for source in sources]
        # Deeper files first: they override shallower ones (and a file is read once).
        parsed.sort(key=lambda item: (-item[0].count("/") - (item[0] != ""), item[0]))
        self._files = parsed
        # Then core.ignorecase changes nothing for a path written in lower case.
        self.case_blind = all(line.pattern is None or line.pattern.case_blind
                              for _directory, lines in parsed for line in lines)
        self._macros: dict[str, tuple[tuple[str, State], ...]] = dict(_BUILTIN_MACROS)
        for directory, lines in parsed:
            if directory == "":
                for line in lines:  # a later definition replaces an earlier one
                    if line.macro is not None:
                        self._macros[line.macro] = line.states

    def __bool__(self) -> bool:
        return any(lines for _directory, lines in self._files) or bool(self.problems)

    def of(self, path: str, *, ignore_case: bool = False,
           wanted: frozenset[str] | None = None) -> dict[str, Decision]:
        """Every attribute git gives `path` (from the work tree's top) that is not left
        unspecified by all lines; with `wanted`, it stops once those are decided."""
        decided: dict[str, Decision] = {}
        encoded = path.encode("utf-8", "surrogateescape")
        if ignore_case:
            encoded = encoded.lower()  # ASCII only, as git's
        basename = encoded.rsplit(b"/", 1)[-1]
        for directory, lines in self._files:
            if directory and not path.startswith(directory + "/"):
                continue
            relative = encoded[len(directory.encode("utf-8", "surrogateescape")) + 1:] \
                if directory else encoded
            for line in reversed(lines):
                if line.pattern is None or \
                        not line.pattern.matches(relative, basename, ignore_case):
                    continue
                self._fill(decided, line)
                if wanted is not None and decided.keys() >= wanted:
                    return decided
        return decided

    def _fill(self, decided: dict[str, Decision], line: _Line) -> None:
        # git fills right to left, a set macro expanding in place: depth first, iteratively
        # (a chain of macros as long as the file allows must not exhaust the stack).
        pending: list[tuple[Iterator[tuple[str, State]], str | None]] = [
            (reversed(line.states), None)]
        while pending:
            states, via = pending[-1]
            step = next(states, None)
            if step is None:
                pending.pop()
                continue
            name, state = step
            if name in decided:
                continue
            decided[name] = Decision(state, line.source, line.number, via)
            if state is True and name in self._macros:
                pending.append((reversed(self._macros[name]), name))


class Rewrite(NamedTuple):
    """A connc path that an attribute makes git rewrite on checkout or export."""

    path: str  # from the work tree's top
    attribute: str  # as written: `text`, `eol=crlf`, `filter=lfs`
    source: str  # the .gitattributes that decided it, from the top
    line: int
    via: str | None


def rewrites(attributes: Attributes, paths: Iterable[str]) -> list[Rewrite]:
    """Every (path, rewriting attribute), under case-sensitive and case-insensitive matching."""
    found: dict[tuple[str, str, str, int], Rewrite] = {}
    for path in paths:
        lower = path.isascii() and path == path.lower()
        for ignore_case in (False,) if lower and attributes.case_blind else (False, True):
            for name, decision in attributes.of(path, ignore_case=ignore_case,
                                                wanted=REWRITING).items():
                if name not in REWRITING or decision.state is None or decision.state is False:
                    continue
                shown = name if decision.state is True else f"{name}={decision.state}"
                found.setdefault((path, shown, decision.source, decision.line),
                                 Rewrite(path, shown, decision.source, decision.line,
                                         decision.via))
    return list(found.values())


# ---------------------------------------------------------------------------- a checkout


def findings(root: Path, relpaths: Iterable[str] | None = None,
             files: repository.Files = repository.DISK) -> list[Finding]:
    """CONNC017 for each `.gitattributes` line of the checkout at `root` that rewrites one of
    `relpaths` that exists (default: every file connc could read), and for each such file
    connc cannot check. Nothing is listed or matched when no `.gitattributes` applies (the
    common case)."""
    top, prefix = _work_tree(root, files)
    attributes = Attributes(_checkout_sources(top, prefix, files))
    if not attributes:
        return []
    relpaths = _layout(root, files) if relpaths is None else \
        [relpath for relpath in relpaths if repository.present(root / relpath, files)]
    found = [finding(_from_root(problem.source, prefix), problem.line, 1, "CONNC017",
                     f"{problem.message}: connc cannot tell which connc files git rewrites on "
                     f"checkout; fix or remove it")
             for problem in attributes.problems]
    by_line: dict[tuple[str, int], list[Rewrite]] = {}
    for rewrite in rewrites(attributes, (prefix + relpath for relpath in relpaths)):
        by_line.setdefault((rewrite.source, rewrite.line), []).append(rewrite)
    for (source, line), group in sorted(by_line.items()):
        found.append(finding(_from_root(source, prefix), line, 1, "CONNC017",
                             _message(source, group, prefix)))
    return found


def _message(source: str, group: list[Rewrite], prefix: str) -> str:
    names = sorted({rewrite.attribute for rewrite in group})
    via = sorted({rewrite.via for rewrite in group if rewrite.via})
    paths = sorted({rewrite.path[len(prefix):] for rewrite in group})
    shown = ", ".join(f"`{printable(p)}`" for p in paths[:3])
    if len(paths) > 3:
        shown += f" and {len(paths) - 3} more"
    directory = posixpath.dirname(source)
    patterns = sorted({_fix_pattern(posixpath.relpath(prefix + p, directory or "."),
                                    directory in {prefix + d for d in _CONNC_DIRECTORIES})
                       for p in paths})
    return (f"sets {', '.join(f'`{printable(n)}`' for n in names)}"
            f"{' (through macro ' + ', '.join(via) + ')' if via else ''} on {shown}: git "
            f"rewrites {'it' if len(paths) == 1 else 'them'} on checkout or export, so render "
            f"would read other bytes than review read; remove the line, or unset them after "
            f"it in this file: `PATTERN {UNSET_ALL}` for "
            f"{', '.join(f'`{printable(p)}`' for p in patterns)}")


_CONNC_DIRECTORIES = (repository.CONNECTIONS_DIR, repository.PIPELINES_DIR)


def _fix_pattern(relative: str, in_connc_directory: bool) -> str:
    """A pattern, for the .gitattributes that rewrote it, that covers the file and no file
    connc does not read (a project's own sources keep their line-end conversion)."""
    directory, _slash, name = relative.rpartition("/")
    if directory:
        return f"{directory}/**"
    return "*" if in_connc_directory else f"/{name}"


def _work_tree(root: Path, files: repository.Files) -> tuple[Path, str]:
    """The top of the git work tree holding `root` (the nearest directory with a `.git`; `root`
    itself for a tarball), and `root`'s path from it ("" or "dir/")."""
    for directory in (root, *root.parents):
        if files.lexists(directory / ".git"):
            prefix = root.relative_to(directory).as_posix()
            return directory, "" if prefix == "." else f"{prefix}/"
    return root, ""


def _checkout_sources(top: Path, prefix: str, files: repository.Files) -> list[Source]:
    parts = prefix.rstrip("/").split("/") if prefix else []
    directories = ["/".join(parts[:depth]) for depth in range(len(parts) + 1)]
    directories += [prefix + repository.CONNECTIONS_DIR, prefix + repository.PIPELINES_DIR]
    sources = []
    for directory in directories:
        relpath = posixpath.join(directory, repository.GITATTRIBUTES)
        source = _read(top / relpath, relpath, files)
        if source is not None:
            sources.append(source)
    return sources


def _read(path: Path, relpath: str, files: repository.Files) -> Source | None:
    if not repository.present(path, files):
        return None
    if files.is_symlink(path):
        # git 2.32 and later do not follow it; older versions do.
        return Source(relpath, b"", "a symlink, which some versions of git follow")
    if not files.is_file(path):
        return Source(relpath, b"", "not a regular file")
    try:
        if files.size(path) > _MAX_BYTES:
            return Source(relpath, b"", f"larger than {_MAX_BYTES} bytes")
        return Source(relpath, files.read(path))
    except OSError as error:
        return Source(relpath, b"", f"unreadable ({error.strerror})")


def _layout(root: Path, files: repository.Files) -> list[str]:
    relpaths = [name for name in repository.TOP_FILES if repository.present(root / name, files)]
    for directory in (repository.CONNECTIONS_DIR, repository.PIPELINES_DIR):
        try:
            relpaths += [f"{directory}/{name}" for name in files.names(root / directory)
                         if not name.startswith(".")]
        except OSError:
            pass
    return relpaths


def _from_root(source: str, prefix: str) -> str:
    return posixpath.relpath(source, prefix.rstrip("/") or ".")
