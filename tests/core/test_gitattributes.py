"""`connc.gitattributes` gives paths the attributes `git check-attr` gives them.

The differential tests write generated `.gitattributes` files (patterns from wildmatch's whole
syntax, macros, states) into a real git work tree and compare every attribute of generated
paths with what git says, case-sensitive and under core.ignorecase.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from connc.gitattributes import UNSET_ALL, Attributes, Source, findings, rewrites

# ---------------------------------------------------------------------------- git's answer


class Git:
    """A scratch git work tree whose .gitattributes files are rewritten for each example."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"}
        subprocess.run(["git", "init", "-q", str(root)], check=True, env=self.env)
        self.written: list[Path] = []

    def write(self, files: dict[str, bytes]) -> None:
        for path in self.written:
            path.unlink()
        self.written = []
        for relpath, data in files.items():
            path = self.root / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            self.written.append(path)

    def check_attr(self, paths: list[str], *, ignore_case: bool) -> dict[str, dict[str, str]]:
        done = subprocess.run(
            ["git", "-c", f"core.ignorecase={str(ignore_case).lower()}", "check-attr", "-a",
             "-z", "--stdin"], cwd=self.root, env=self.env, check=True, capture_output=True,
            input=b"".join(os.fsencode(p) + b"\0" for p in paths), timeout=60)
        fields = done.stdout.split(b"\0")[:-1]
        result: dict[str, dict[str, str]] = {path: {} for path in paths}
        for index in range(0, len(fields), 3):
            path, name, info = (os.fsdecode(f) for f in fields[index:index + 3])
            if not name.startswith("builtin_"):  # git 2.42's file mode, of indexed paths
                result[path][name] = info
        return result


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Git]:
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("home")
        patch.setenv("HOME", str(home))  # no core.attributesFile, no ~/.config/git/attributes
        patch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
        yield Git(tmp_path_factory.mktemp("attributes"))


def ours(files: dict[str, bytes], paths: list[str], *,
         ignore_case: bool) -> dict[str, dict[str, str]]:
    attributes = Attributes(Source(relpath, data) for relpath, data in files.items())
    shown = {True: "set", False: "unset"}
    return {path: {name: shown.get(d.state, d.state) if isinstance(d.state, bool) else d.state
                   for name, d in attributes.of(path, ignore_case=ignore_case).items()
                   if d.state is not None}
            for path in paths}


# ---------------------------------------------------------------------------- generated input

# Paths and patterns share a small alphabet, so that most patterns match some paths.
COMPONENTS = ["a", "b", "A", "B", "ab", "aB", "x.yaml", "X.YAML", "connections.d",
              "k8s.sops.yaml", "K8S.SOPS.YAML", "c-d", "_e", ".hidden", "a.b.c", "[x]", "a*b",
              "sp ace", "é", "x9", "Z", "m]", "a-z"]
DIRECTORIES = ["", "a", "a/b", "A", "connections.d", "x.yaml"]

TOKENS = ["a", "b", "A", "x", ".yaml", ".YAML", "connections.d", "sops", "k8s", "*", "?",
          "[a-c]", "[!a]", "[^ab]", "[[:alpha:]]", "[[:upper:]]", "[[:lower:]]", "[[:digit:]]",
          "[[:punct:]]", "[[:space:]]", "[[:xdigit:]]", "[[:alnum:]]", "[[:blank:]]",
          "[[:graph:]]", "[[:print:]]", "[[:cntrl:]]", "[[:bogus:]]", "[[:a]", "[[]", "[]a]",
          "[a-]", "[A-Z]", "[x", "[\\]]", "[a\\-c]", "\\a", "\\A", "\\*", "\\", "\\/", "é",
          "-", ".", "[.]", "[-a]", "[!]]", "[a-c-e]", "[z-a]", "[/]", "**", "***"]
segments = st.one_of(st.just("**"), st.lists(st.sampled_from(TOKENS), min_size=1, max_size=3)
                     .map("".join))
patterns = st.builds(lambda lead, parts, trail: lead + "/".join(parts) + trail,
                     st.sampled_from(["", "", "/"]), st.lists(segments, min_size=1, max_size=3),
                     st.sampled_from(["", "", "", "/"]))
# Simple ones, which match many paths: lines then compete for the same attributes.
simple_patterns = st.sampled_from(["*", "a", "A", "*.yaml", "**", "a/**", "**/a", "/a", "A/**",
                                   "b", "[[:upper:]]*", "*[[:upper:]]", "\\A*", "\\a*", "*/",
                                   "a/", "**/b/**", "[A-Z]*", "[a-z]*", "connections.d/*"])
STATES = ["text", "-text", "!text", "text=auto", "eol=crlf", "eol=lf", "binary", "-binary",
          "!binary", "m1", "-m1", "!m1", "m2", "filter=lfs", "-filter", "diff", "-diff",
          "merge=ours", "ident", "export-subst", "export-ignore", "working-tree-encoding=UTF-16",
          "crlf", "-crlf", "x_y.z", "bad=", "-", "!", "a=b=c", "é", "m1=x", "binary=set",
          "m3", "text=", "-m2", "!m2"]
MACROS = ["[attr]m1 text -diff", "[attr]m2 m1 eol=lf", "[attr]binary text ident",
          "[attr]m1 -text", "[attr]m3 m2 !text", "[attr]m2 binary", "[attr]-bad text",
          "[attr] m1 text"]


def quote(pattern: str) -> str:
    return '"' + pattern.replace("\\", "\\\\").replace(" ", "\\040") + '"'


def attribute_files(pattern_strategy: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, bytes]]:
    states = st.lists(st.sampled_from(STATES), min_size=0, max_size=4).map(" ".join)
    pattern_lines = st.builds(lambda p, s, sep: f"{p}{sep}{s}",
                              st.one_of(pattern_strategy, pattern_strategy.map(quote)),
                              states, st.sampled_from([" ", "\t", "  ", " \r"]))
    lines = st.one_of(pattern_lines, pattern_lines, pattern_lines, st.sampled_from(MACROS),
                      st.just("# comment"), st.just(""), st.just("!negated text"))
    return st.dictionaries(
        st.sampled_from(DIRECTORIES).map(lambda d: f"{d}/.gitattributes" if d
                                         else ".gitattributes"),
        st.lists(lines, max_size=8).map(lambda ls: ("\n".join(ls) + "\n").encode()),
        min_size=1, max_size=4)


# Often below a directory that has a .gitattributes, so that files compete too.
path = st.builds(lambda directory, names: "/".join(filter(None, [directory, *names])),
                 st.sampled_from(DIRECTORIES),
                 st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=2))
paths = st.lists(path, min_size=1, max_size=20, unique=True)
SLOW = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def agrees(scratch: Git, files: dict[str, bytes], paths: list[str]) -> None:
    scratch.write(files)
    for ignore_case in (False, True):
        assert ours(files, paths, ignore_case=ignore_case) == \
            scratch.check_attr(paths, ignore_case=ignore_case), f"core.ignorecase={ignore_case}"


@SLOW
@given(files=attribute_files(st.one_of(patterns, simple_patterns)), paths=paths)
def test_every_attribute_agrees_with_git_check_attr(scratch: Git, files: dict[str, bytes],
                                                     paths: list[str]) -> None:
    agrees(scratch, files, paths)


@SLOW
@given(pattern=patterns, paths=paths)
def test_each_pattern_matches_what_git_matches(scratch: Git, pattern: str,
                                               paths: list[str]) -> None:
    """wildmatch itself: one line, many paths, both cases."""
    agrees(scratch, {".gitattributes": f"{pattern} text\n".encode()}, paths)


@SLOW
@given(files=attribute_files(simple_patterns), paths=paths)
# Each rule once for certain: a deeper file overrides a shallower one; the last definition of
# a macro wins, the built-in `binary` too, and a set macro expands in place, right to left;
# macros are defined in the top-level file only; `!attr` overrides; a byte-order mark and
# CRLF; `**/` and a character class under core.ignorecase.
@example(files={".gitattributes": b"* eol=lf text\n", "a/.gitattributes": b"* eol=crlf\n",
                "a/b/.gitattributes": b"* -eol\n"}, paths=["a/b/x", "a/x", "x"])
@example(files={".gitattributes": b"[attr]binary text ident\n[attr]m1 eol=lf\n[attr]m1 -text\n"
                                  b"* binary m1\nb m1=x -binary\n"}, paths=["x", "b"])
@example(files={".gitattributes": b"[attr]m1 eol=lf\n",
                "a/.gitattributes": b"[attr]m1 text\n* m1\n"}, paths=["a/x"])
@example(files={".gitattributes": b"\xef\xbb\xbf* text\r\nx !text -diff\r\ny text -text\n"},
         paths=["x", "y", "z"])
@example(files={".gitattributes": b"**/b/** ident\n[[:upper:]]* eol=lf\n[A-Z]* text\n"},
         paths=["a", "B", "a/b/c", "b/c", "A/B/c"])
def test_precedence_and_macros_agree(scratch: Git, files: dict[str, bytes],
                                     paths: list[str]) -> None:
    """Patterns that match often, so that lines, files and macros compete."""
    agrees(scratch, files, paths)


# ---------------------------------------------------------------------------- the findings


def checkout(root: Path, files: dict[str, str | bytes]) -> Path:
    """A connection repository (a pipeline, members.yaml, .sops.yaml) with `files` added."""
    for relpath, content in {"members.yaml": "x", ".sops.yaml": "x",
                             "pipelines.d/web.yaml": "x", "connections.d/reg.sops.yaml": "x",
                             **files}.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def found(root: Path) -> list[tuple[str, int, str]]:
    return [(f.path, f.line, f.message) for f in findings(root)]


@pytest.mark.parametrize("line", [
    "* working-tree-encoding=windows-1252", "* filter=lfs", "* ident", "* text",
    "* text=auto", "* eol=crlf", "* crlf", "* export-subst", "* export-ignore",
    "*.yaml text=input", "[attr]mine eol=lf\n* mine",
])
def test_each_rewriting_attribute_is_found_and_the_advised_fix_works(tmp_path: Path,
                                                                     line: str) -> None:
    root = checkout(tmp_path, {".gitattributes": line + "\n"})
    [(path, number, message)] = found(root)
    assert (path, number) == (".gitattributes", line.count("\n") + 1)
    patterns = re.findall(r"`([^`]+)`", message.rsplit(" for ", 1)[1])
    fix = "".join(f"{pattern} {UNSET_ALL}\n" for pattern in patterns)
    (root / ".gitattributes").write_text(line + "\n" + fix)
    assert found(root) == []


@pytest.mark.parametrize("line", [
    "* -text -eol -filter", "* !text !working-tree-encoding", "* binary", "* diff merge=ours",
    "*.png filter=lfs", "docs/** text", "connections.d/ text", "connections.d text",
])
def test_attributes_that_rewrite_no_connc_file(tmp_path: Path, line: str) -> None:
    assert found(checkout(tmp_path, {".gitattributes": line + "\n"})) == []


def test_every_place_that_applies(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    root = checkout(tmp_path / "infra" / "conn", {
        "connections.d/.gitattributes": "*.sops.yaml ident\n",
        "pipelines.d/.gitattributes": "# nothing\n",
        "docs/.gitattributes": "* text\n",  # applies to no connc file
    })
    (tmp_path / "infra" / ".gitattributes").write_text("conn/members.yaml eol=crlf\n")
    (tmp_path / ".gitattributes").write_text("[attr]conv text\n**/.sops.yaml conv\n")
    assert sorted((path, number) for path, number, _m in found(root)) == [
        ("../../.gitattributes", 2), ("../.gitattributes", 1),
        ("connections.d/.gitattributes", 1)]
    [message] = [m for p, _n, m in found(root) if p == "../../.gitattributes"]
    assert "(through macro conv)" in message and "`.sops.yaml`" in message


def test_a_tarball_has_no_git_and_its_own_gitattributes_still_count(tmp_path: Path) -> None:
    root = checkout(tmp_path, {".gitattributes": "pipelines.d/* export-subst\n"})
    assert [(p, n) for p, n, _m in found(root)] == [(".gitattributes", 1)]


def test_case_insensitive_matching_counts(tmp_path: Path) -> None:
    # core.ignorecase, the default on macOS and Windows, makes this line match.
    root = checkout(tmp_path, {".gitattributes": "PIPELINES.D/*.YAML ident\n"})
    assert [(p, n) for p, n, _m in found(root)] == [(".gitattributes", 1)]


@pytest.mark.parametrize(("content", "line", "phrase"), [
    (b"* -text\n\0* text\n", 2, "NUL byte"),
    (b"* -text\n" + b"#" * 2100 + b"\n", 2, "2100 bytes"),
])
def test_what_git_reads_otherwise_fails_closed(tmp_path: Path, content: bytes, line: int,
                                               phrase: str) -> None:
    [(path, number, message)] = found(checkout(tmp_path, {".gitattributes": content}))
    assert (path, number) == (".gitattributes", line) and phrase in message


def test_a_symlinked_gitattributes_fails_closed(tmp_path: Path) -> None:
    root = checkout(tmp_path, {"elsewhere": "* text\n"})
    (root / ".gitattributes").symlink_to("elsewhere")
    [(path, _number, message)] = found(root)
    assert path == ".gitattributes" and "symlink" in message


def test_no_gitattributes_lists_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The common case costs a few stat calls: no directory is listed, no path matched.
    root = checkout(tmp_path, {})
    monkeypatch.setattr(os, "listdir", lambda *_a: pytest.fail("listed a directory"))
    assert findings(root) == []


def test_unset_and_unspecified_rewrite_nothing() -> None:
    attributes = Attributes([Source(".gitattributes", b"* text eol=lf\nx -text !eol\n")])
    assert sorted(r.attribute for r in rewrites(attributes, ["y"])) == ["eol=lf", "text"]
    assert rewrites(attributes, ["x"]) == []
