"""Reading one repository file: bytes to a parsed document with positions, or findings.

The YAML layer is built on libyaml's composer. The C composer gives a node tree whose marks
hold line and column; we convert it to plain Python ourselves. That is faster than PyYAML's
constructor, detects duplicate keys (which PyYAML silently drops), bounds alias expansion (a
"billion laughs" file cannot blow up), and keeps the tree so any finding can point at its key
or value without a second parse.

`read` is the one reader of repository files: validate, render, check, diff and the authoring
commands all go through it (layout and symlinks, size, UTF-8 and line breaks, YAML, duplicate
keys, kind, id against file name). What each then checks the data against differs on purpose:
validate uses the pydantic models for findings at every key, render the JSON Schemas
generated from them (no pydantic on its start-up path). No pydantic here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from connc import repository
from connc.findings import Finding, finding, printable
from connc.schema import policy

try:
    _Base: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Base = yaml.SafeLoader

# SafeLoader's implicit resolvers by first character, each followed by the wildcard ones.
_WILDCARD = tuple(_Base.yaml_implicit_resolvers.get(None, ()))
_IMPLICIT = {first: tuple(resolvers) + _WILDCARD
             for first, resolvers in _Base.yaml_implicit_resolvers.items() if first is not None}
_STR_TAG: str = _Base.DEFAULT_SCALAR_TAG
_SEQ_TAG: str = _Base.DEFAULT_SEQUENCE_TAG
_MAP_TAG: str = _Base.DEFAULT_MAPPING_TAG


class _Loader(_Base):  # type: ignore[misc]
    """SafeLoader's tag resolution minus the path resolvers, which connc never registers.

    The composer calls `resolve` in Python once per node; PyYAML's general version also looks
    for path resolvers and builds a list of candidate regexes on each call. Same tags from the
    same regexes in the same order; parsing a connection file takes about a tenth less time.
    """

    def resolve(self, kind: type[Node], value: str | None, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode:
            if implicit[0] and value is not None:
                for tag, regexp in _IMPLICIT.get(value[:1], _WILDCARD):
                    if regexp.match(value):
                        return tag  # type: ignore[no-any-return]
            return _STR_TAG
        return _SEQ_TAG if kind is SequenceNode else _MAP_TAG


MAX_FILE_BYTES = 1024 * 1024  # connection files are a few KB; larger is a mistake or an attack
# .sops.yaml grows with the repository: `connc keys sync` writes one creation rule per set of
# keys, about 130 bytes per connection (1.3 MB for the 10,000 of bench/generate.py).
MAX_SOPS_CONFIG_BYTES = 8 * MAX_FILE_BYTES
MAX_NODES = 50_000  # after alias expansion
MAX_DEPTH = 100  # connc documents nest 4 levels; the converter recurses per level

_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_FLOAT = "tag:yaml.org,2002:float"
# Read as their text by connc, and by the other readers of these files (sops reads `.sops.yaml`
# and a connection's `sops:` block with Go's YAML): `2027-03-01`, and `=`, which YAML 1.1 gives
# a tag of its own.
_TEXT_TAGS = frozenset({_STR_TAG, "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"})
_MERGE = "tag:yaml.org,2002:merge"

DocPath = tuple[str | int, ...]


class YamlProblem(Exception):
    """A document that cannot be read; carries the code and a 1-based position."""

    def __init__(self, code: str, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.code, self.message, self.line, self.column = code, message, line, column


@dataclasses.dataclass
class Document:
    data: Any
    root: Node
    duplicate_keys: list[tuple[str, int, int]]  # (key, line, column) of each repeated key
    # Each mapping's keys, indexed the first time a position is looked up in it: only files
    # with findings pay for it, and a lookup is O(1) however many findings a mapping has (a
    # scan per lookup made 45,000 findings in one file quadratic). Keyed by the node's id, so
    # not pickled: `__getstate__`.
    _keys: dict[int, dict[str, tuple[Node, Node]]] = dataclasses.field(
        default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_keys": {}}

    def position(self, path: DocPath, *, key: bool = False) -> tuple[int, int]:
        """Line and column of the value at `path` (or of its key), else of the nearest parent."""
        node: Node = self.root
        key_node: Node | None = None
        for step in path:
            child = self._child(node, step)
            if child is None:
                break
            key_node, node = child
        target = key_node if key and key_node is not None else node
        return target.start_mark.line + 1, target.start_mark.column + 1

    def _child(self, node: Node, step: str | int) -> tuple[Node | None, Node] | None:
        if isinstance(node, MappingNode):
            keys = self._keys.get(id(node))
            if keys is None:
                # The last of duplicate keys is the one whose value the converter kept.
                keys = self._keys[id(node)] = {
                    key_node.value: (key_node, value_node) for key_node, value_node in node.value
                    if isinstance(key_node, ScalarNode)}
            return keys.get(step if isinstance(step, str) else str(step))
        if isinstance(node, SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
            return None, node.value[step]
        return None


# YAML 1.1 (libyaml) also breaks lines at NEL, LS and PS, which editors, `git diff` and review
# tools do not show as breaks: a comment ending in one hides the rest of its line from review
# and feeds it to the parser. (windows-1252's "…" is 0x85, so "Â…" re-encoded is C2 85: NEL.)
_HIDDEN_BREAKS = {"\x85": "NEL", "\u2028": "LS", "\u2029": "PS"}
_BREAK = re.compile("\r\n|\r|\n")  # the breaks an editor shows, CRLF being one


def decode(raw: bytes) -> tuple[str, bool]:
    """Bytes to text. Returns (text, had_bom); raises YamlProblem for non-UTF-8 input and for
    a line break editors do not show (NEL, LS, PS)."""
    had_bom = raw.startswith(b"\xef\xbb\xbf")
    if had_bom:
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise YamlProblem("CONNC010", f"byte {exc.start} is not valid UTF-8; save the file as UTF-8",
                          line) from None
    # Looked for only in text that is not ASCII (connc's files nearly never are), with
    # str.find: a regular expression or a bytes search of two bytes costs as much as decoding.
    if not raw.isascii():
        found = [index for index in map(text.find, _HIDDEN_BREAKS) if index >= 0]
        if found:
            _refuse_hidden_break(text, min(found))
    return text, had_bom


def _line_column(text: str, index: int) -> tuple[int, int]:
    """The 1-based line and column of `text[index]` as an editor shows them (and as libyaml
    counts them, up to a character it refuses): LF, CR and CRLF end lines, nothing else."""
    line = sum(1 for _ in _BREAK.finditer(text, 0, index)) + 1
    start = max(text.rfind("\n", 0, index), text.rfind("\r", 0, index)) + 1
    return line, index - start + 1


def _refuse_hidden_break(text: str, index: int) -> None:
    char = text[index]
    raise YamlProblem("CONNC015", f"U+{ord(char):04X} ({_HIDDEN_BREAKS[char]}) is a line break "
                      f"to YAML but not to editors or review tools, so the file does not say "
                      f"what it shows; remove it", *_line_column(text, index))


def _refuse_character(text: str, error: yaml.reader.ReaderError) -> YamlProblem:
    """A character YAML does not allow (NUL, BEL, ...), at its own line and column."""
    index = error.position
    if _Base is not yaml.SafeLoader:
        # libyaml reads the text as UTF-8 and counts bytes.
        index = len(text.encode("utf-8")[:index].decode("utf-8", errors="ignore"))
    char = text[index] if index < len(text) else ""
    what = f"U+{ord(char):04X}" if char else "a character"
    return YamlProblem("CONNC001", f"{what} is a character YAML does not allow in a file; "
                       f"remove it", *_line_column(text, index))


def parse(text: str) -> Document:
    """Parse exactly one YAML document. Raises YamlProblem for anything else."""
    if not text.strip() or all(
        not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()
    ):
        raise YamlProblem("CONNC004", "the file is empty")
    loader = _Loader(text)
    try:
        if not loader.check_node():
            raise YamlProblem("CONNC004", "the file is empty")
        root = loader.get_node()
        if loader.check_node():
            extra = loader.get_node()
            mark = extra.start_mark if extra is not None else root.end_mark
            raise YamlProblem("CONNC005", "the file holds several YAML documents; keep one per file",
                              mark.line + 1, mark.column + 1)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = exc.problem or exc.context or "invalid YAML"
        raise YamlProblem("CONNC001", _syntax_message(reason, text, line, column), line,
                          column) from None
    except yaml.reader.ReaderError as exc:
        raise _refuse_character(text, exc) from None
    except yaml.YAMLError as exc:
        raise YamlProblem("CONNC001", f"invalid YAML: {type(exc).__name__}") from None
    finally:
        loader.dispose()
    converter = _Converter()
    data = converter.convert(root)
    return Document(data, root, converter.duplicates)


def _syntax_message(reason: str, text: str, line: int, column: int) -> str:
    # libyaml's reasons name no value, so they cannot leak a secret; we only add a hint.
    lines = text.splitlines()
    if 0 < line <= len(lines) and "\t" in lines[line - 1][: column + 1]:
        return f"{reason} (a tab: YAML indents with spaces only)"
    return reason


class _Converter:
    def __init__(self) -> None:
        self.count = 0
        self.duplicates: list[tuple[str, int, int]] = []
        # Collections being converted: an alias to one of them is a cycle (`&a [*a]`), which
        # the composer accepts and a naive conversion would follow until the stack overflows.
        self.open: list[Node] = []

    def convert(self, node: Node) -> Any:
        self.count += 1
        mark = node.start_mark
        if self.count > MAX_NODES:
            raise YamlProblem("CONNC009", f"more than {MAX_NODES} values after expanding aliases",
                              mark.line + 1, mark.column + 1)
        cls = node.__class__
        if cls is ScalarNode:
            return _scalar(node)
        if node.tag != _MAP_TAG and node.tag != _SEQ_TAG:
            raise _foreign(node)
        if any(node is parent for parent in self.open):
            raise YamlProblem("CONNC009", "an alias refers to a value that contains it",
                              mark.line + 1, mark.column + 1)
        if len(self.open) >= MAX_DEPTH:
            raise YamlProblem("CONNC001", f"values are nested more than {MAX_DEPTH} levels deep",
                              mark.line + 1, mark.column + 1)
        self.open.append(node)
        try:
            return self._mapping(node) if cls is MappingNode else [
                self.convert(item) for item in node.value]
        finally:
            self.open.pop()

    def _mapping(self, node: Node) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                # `<<: *defaults` copies keys into this mapping for YAML readers that merge
                # (sops, for `.sops.yaml` and the `sops:` block) and is one more key for
                # connc: a recipient merged in would be sops' and no row of `connc diff`.
                mark = key_node.start_mark
                raise YamlProblem("CONNC001", "a merge key (`<<`) copies keys into this "
                                  "mapping for some YAML readers (sops among them) and not "
                                  "for others; write the keys out", mark.line + 1,
                                  mark.column + 1)
            key = key_node.value if key_node.__class__ is ScalarNode else self.convert(key_node)
            if not isinstance(key, str):
                key = str(key)
            if key in result:
                mark = key_node.start_mark
                self.duplicates.append((key, mark.line + 1, mark.column + 1))
            result[key] = self.convert(value_node)
        return result


def _scalar(node: Node) -> Any:
    tag, value = node.tag, node.value
    if tag == _INT:
        try:
            return int(value.replace("_", ""), 0) if value[:2] in ("0x", "0o") else int(value.replace("_", ""))
        except ValueError:
            return value
    if tag == _BOOL:
        return value.lower() in ("true", "yes", "on", "y")
    if tag == _NULL:
        return None
    if tag == _FLOAT:
        try:
            return float(value)
        except ValueError:
            return value
    if tag in _TEXT_TAGS:
        return value  # strings; timestamps stay text and the model parses them
    raise _foreign(node)


def _foreign(node: Node) -> YamlProblem:
    """An explicit tag connc does not read as other YAML readers do (`!!binary` is text here
    and its decoded bytes in Go's YAML, which sops reads `.sops.yaml` with; `!!set`, `!custom`)."""
    mark = node.start_mark
    tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
    return YamlProblem("CONNC001", f"the tag `{printable(tag, 40)}` is read one way by "
                       f"connc and another by other YAML readers (sops among them); remove it",
                       mark.line + 1, mark.column + 1)


# ---------------------------------------------------------------------------- one file

API_VERSION = "connc/v1"


def read(root: Path, relpath: str, kind: str | None, *, listed: bool = False,
         files: repository.Files = repository.DISK) -> tuple[Document | None, list[Finding]]:
    """Read one repository file as a document of `kind` (None: `.sops.yaml`, sops' own
    format, which has no apiVersion or kind); problems become findings.

    None when there is nothing to check further (unreadable, not YAML, another kind). The
    document comes back with its findings otherwise, CONNC105 included when `metadata.id`
    differs from the file name. `listed`: the path came from `repository.list_files`, which
    already refused symlinks out of the repository and non-files. `files`: where the bytes
    come from (the file system, or a git revision's objects: `repository.Files`).
    """
    if not listed:
        problem = repository.inside(root, relpath, files)
        if problem:
            return None, [problem]
    document, found = _parse_file(root, relpath, files)
    if document is None or kind is None:
        return document, found
    wrong_kind = _check_kind(document, relpath, kind)
    if wrong_kind:
        return None, found + [wrong_kind]
    suffix = repository.SUFFIXES.get(kind)
    if suffix is not None:
        mismatch = _id_matches_stem(document, relpath, suffix)
        if mismatch:
            found.append(mismatch)
    return document, found


def _parse_file(root: Path, relpath: str,
                files: repository.Files) -> tuple[Document | None, list[Finding]]:
    path = root / relpath
    try:
        size = files.size(path)
        limit = MAX_SOPS_CONFIG_BYTES if relpath == repository.SOPS_CONFIG else MAX_FILE_BYTES
        if size > limit:
            return None, [finding(relpath, 1, 1, "CONNC006",
                                  f"{size} bytes; connc reads this file up to {limit} bytes")]
        raw = files.read(path)
    except OSError as exc:
        return None, [finding(relpath, 1, 1, "CONNC003", f"cannot read the file: {exc.strerror}")]
    found: list[Finding] = []
    try:
        text, had_bom = decode(raw)
        if had_bom:
            found.append(finding(relpath, 1, 1, "CONNC013",
                                 "the file starts with a UTF-8 byte-order mark; save it without one"))
        document = parse(text)
    except YamlProblem as problem:
        return None, found + [finding(relpath, problem.line, problem.column, problem.code,
                                      problem.message)]
    for key, line, column in document.duplicate_keys:
        found.append(finding(relpath, line, column, "CONNC002",
                             f"key `{key}` appears twice in one mapping; the first would be lost"))
    return document, found


def _check_kind(document: Document, relpath: str, expected: str) -> Finding | None:
    data = document.data
    if not isinstance(data, dict):
        return finding(relpath, *document.position(()), "CONNC102",
                       f"the document must be a mapping with `kind: {expected}`")
    if data.get("apiVersion") != API_VERSION:
        line, column = document.position(("apiVersion",))
        return finding(relpath, line, column, "CONNC104",
                       f"`apiVersion` must be `{API_VERSION}`")
    if data.get("kind") != expected:
        line, column = document.position(("kind",))
        return finding(relpath, line, column, "CONNC104",
                       f"`kind` must be `{expected}` for a file in this place")
    return None


def _id_matches_stem(document: Document, relpath: str, suffix: str) -> Finding | None:
    metadata = document.data.get("metadata")
    doc_id = metadata.get("id") if isinstance(metadata, dict) else None
    expected = repository.stem(relpath, suffix)
    if isinstance(doc_id, str) and doc_id != expected:
        line, column = document.position(("metadata", "id"))
        # Quote the id only when it is one: an invalid id is reported by the model check, and
        # any text could be pasted there (a token, by mistake).
        shown = f"`{doc_id}`" if repository.is_id(doc_id) else "not a valid id"
        return finding(relpath, line, column, "CONNC105",
                       f"`metadata.id` is {shown} but the file is named `{expected}{suffix}`; "
                       f"rename one so they match")
    return None


def expiry_finding(expires: object, connection_id: str, document: Document, relpath: str,
                   today: dt.date, warning_days: int) -> Finding | None:
    """CONNC501 when `metadata.expiresAt` has passed, CONNC502 within the warning window."""
    if not isinstance(expires, str):
        return None  # absent; any other type is the model check's to report
    try:
        day = policy.parse_date(expires)  # sops rewrites dates as 2027-03-01T00:00:00Z
    except policy.Violation:
        return None  # the model check reports it
    line, column = document.position(("metadata", "expiresAt"))
    if day <= today:
        return finding(relpath, line, column, "CONNC501",
                       f"the credential expired on {day.isoformat()}; rotate it with "
                       f"`connc secret set {connection_id} FIELD` and update expiresAt")
    days_left = (day - today).days
    if days_left <= warning_days:
        return finding(relpath, line, column, "CONNC502",
                       f"the credential expires on {day.isoformat()}, in {days_left} days; "
                       f"rotate it before then")
    return None
