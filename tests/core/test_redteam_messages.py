"""What a file holds reaches a terminal or a CI log only as printable text: a recipient in a
connection's `sops` block (which anyone with write access can edit, keyless) with an escape
sequence or a newline that would forge a line of the log (`::error::...` under GitHub
Actions) is shown with those characters replaced, by every command that names it."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.build import connection, key_env, make_repo, pipeline
from kit.keys import new_age_key
from kit.run import connc

FORGED = "::error file=x::all checks passed"
EVIL = "age1zz\\u001b[31mRED\\u001b[0m\\n" + FORGED  # as YAML escapes in a double-quoted string


def _forged_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "\x1b" in line or line.startswith(FORGED)]


def test_a_recipient_with_control_characters_is_shown_printable(tmp_path: Path) -> None:
    _key, other = new_age_key(tmp_path)
    root = make_repo(tmp_path / "repo", connections={"gl": connection("gl")},
                     pipelines={"ci": pipeline("ci", "gl")}, locked={"gl": other})
    path = root / "connections.d" / "gl.sops.yaml"
    text = path.read_text()
    path.write_text(text.replace("    age:\n", f'    age:\n        - recipient: "{EVIL}"\n'
                                              f'          enc: "x"\n', 1))
    commands = [["validate"], ["validate", "--decrypt"], ["keys"],
                ["render", "ci", "--out", str(tmp_path / "out")], ["seal", "gl"],
                ["check", "gl"]]
    for args in commands:
        ran = connc(args[0], "--repo", root, *args[1:], env=key_env(), timeout=60)
        assert ran.returncode in (0, 1, 2), (args, ran.stderr)  # keys: a view, exit 0
        assert _forged_lines(ran.stdout + ran.stderr) == [], args
        assert "RED" in ran.stdout + ran.stderr, args  # named all the same


@pytest.mark.parametrize("recipient", ["age1\x1b[2Jx", "age1a\nb", "arn:aws:kms:\r::x"])
def test_shown_recipient_is_one_printable_line(recipient: str) -> None:
    from connc.sops.recipients import shown_recipient

    shown = shown_recipient(recipient)
    assert shown.isprintable() and len(shown) == len(recipient)


def _layout_with_names(tmp_path: Path) -> Path:
    """A file name and YAML keys with an escape sequence and a newline: git takes both."""
    root = make_repo(tmp_path / "repo", connections={"gl": connection("gl")},
                     pipelines={"ci": pipeline("ci", "gl")})
    (root / "pipelines.d" / f"x\x1b[8m\n{FORGED}.yaml").write_text("a: 1\n")
    members = root / "members.yaml"
    members.write_text(members.read_text() + f'"extra\\u001b[8m\\n{FORGED}": 1\n')
    return root


def test_keys_names_unreadable_files_printable(tmp_path: Path) -> None:
    ran = connc("keys", "--repo", _layout_with_names(tmp_path), env=key_env(), timeout=60)
    assert "could not be read" in ran.stderr
    assert _forged_lines(ran.stdout + ran.stderr) == []


def test_validate_shows_file_names_and_keys_printable(tmp_path: Path) -> None:
    ran = connc("validate", "--repo", _layout_with_names(tmp_path), env=key_env(), timeout=60)
    assert ran.returncode == 1
    assert _forged_lines(ran.stdout + ran.stderr) == []


def test_a_key_file_holding_a_public_key_with_escapes_is_named_printable(
        tmp_path: Path) -> None:
    from connc.sops.keys import sources

    key_file = tmp_path / "key.txt"
    key_file.write_text("age1abc\x1b]0;title\x07\n")
    [found] = [s for s in sources({"SOPS_AGE_KEY_FILE": str(key_file)}) if s.problem]
    assert found.problem is not None and "holds the public key" in found.problem
    assert found.problem.isprintable()
