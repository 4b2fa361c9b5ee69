"""`connc render --format github` read back the way GitHub's runner reads it, and the env
file's use of an inherited GIT_CONFIG_COUNT proven in real `sh` (dash) and `bash`.

The runner's rules are ported here from actions/runner, not taken from connc: workflow commands
(`ActionCommand.TryParseV2`, `UnescapeData`, `UnescapeProperty`) and environment files
(`FileCommandManager`'s `EnvFileKeyValuePairs`: `NAME=value` lines, `NAME<<DELIMITER` heredocs,
lines split at LF on Linux, empty lines skipped).
"""

from __future__ import annotations

import base64
import random
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from connc.findings import escape_data, escape_property, workflow_command
from connc.render.context import Output
from connc.render.envfile import COUNT_WARNING, git_config_index
from kit.actions_runner import DATA, PROPERTY, log_lines, parse_command, parse_env_file, unescape
from kit.build import connection, key_env, make_repo, pipeline
from kit.run import connc


def test_the_ported_env_file_parser_reads_the_runner_s_examples() -> None:
    assert parse_env_file("A=1\nB<<EOF\nx\ny\nEOF\n\nC=a<<b\n") == [
        ("A", "1"), ("B", "x\ny"), ("C", "a<<b")]
    # The bug this file is about: no newline after PREV, and our first line joins its value.
    assert parse_env_file("PREV=value" + "GIT_ASKPASS=/x\n") == [("PREV", "valueGIT_ASKPASS=/x")]
    with pytest.raises(ValueError, match="Matching delimiter"):
        parse_env_file("A<<EOF\nx\n")


# --- escaping --------------------------------------------------------------------------------

TRICKY = ["%", "%25", "%2525", "a%0Ab", "%0D%0A", "50%", "x\ny", "x\r\ny", "\r", "%\n%",
          "%%0A", "a:b,c", "%3A%2C", "p%25x::y"]


@pytest.mark.parametrize("value", TRICKY)
def test_every_workflow_command_comes_back_as_written(value: str) -> None:
    line = workflow_command("warning", value, title=value, file=value)
    assert line.endswith("\n") and "\r" not in line and "\n" not in line[:-1]
    assert parse_command(line[:-1]) == ("warning", {"title": value, "file": value}, value)


def test_escaping_round_trips_random_text() -> None:
    rng = random.Random(8)
    for _ in range(2000):
        value = "".join(rng.choice("%0ADd25:,\r\nx3C") for _ in range(rng.randrange(12)))
        assert unescape(escape_data(value), DATA) == value
        assert unescape(escape_property(value), PROPERTY) == value


# --- what Output.mask registers --------------------------------------------------------------


def test_short_blank_and_common_forms_are_not_registered() -> None:
    output = Output(out=Path("/b"), pipeline="ci")
    output.mask("", username="u", where="zero")
    assert output.masks == set() and output.unmasked == []
    output.mask("a", where="one")
    output.mask("%25", where="three")
    output.mask("abcd", where="four")
    assert "a" not in output.masks and "%25" not in output.masks and "abcd" in output.masks
    assert "%2525" in output.masks  # the URL-encoded form is long enough, and masked
    assert output.unmasked == ["a secret of connection `one`", "a secret of connection `three`"]
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\nAQ==\n-----END PRIVATE KEY-----\n"
    output.mask(pem, where="key")
    assert "MIIEvQIBADANBgkqhkiG9w0B" in output.masks and "AQ==" in output.masks
    assert {"-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----"}.isdisjoint(output.masks)
    assert len(output.unmasked) == 2  # the key has masked lines: no warning
    assert all(Output.maskable(form) for form in output.masks)


@pytest.mark.parametrize(("inherited", "index", "warned"), [
    (None, 0, False), ("", 0, False), ("0", 0, False), ("2", 2, False), ("010", 10, False),
    ("000", 0, False), ("999999999", 999999999, False), ("1000000000", 0, True),
    ("a[$(touch x)]", 0, True), (" 2", 0, True), ("2\n", 0, True), ("1_0", 0, True),
    ("\u0663", 0, True), ("0x10", 0, True), ("-1", 0, True),
])
def test_the_inherited_count_is_matched_never_evaluated(inherited: str | None, index: int,
                                                         warned: bool) -> None:
    warnings: list[str] = []
    environ = {} if inherited is None else {"GIT_CONFIG_COUNT": inherited}
    assert git_config_index(environ, warnings.append) == index
    assert warnings == ([COUNT_WARNING] if warned else [])


# --- connc render --format github, end to end ------------------------------------------------

USER = "pusher"
# (connection id, token) of gitlab connections, and a registry password: `%` in every form
# the runner unescapes, a literal `%0A`, and secrets of one and three characters.
TOKENS = {"pct": "p%25x-secret-9f1", "pct2": "100%-sure-secret-3ab", "lit": "%0Aliteral-77c",
          "one": "a", "three": "%25"}
LONG = [v for v in TOKENS.values() if len(v) >= 4]
REGISTRY_PASSWORD = "reg%25pass%0D-4e2"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    connections: dict[str, dict[str, Any]] = {
        cid: connection(cid, spec={"url": f"https://gitlab.example.com/{cid}"},
                        credential={"token": token}) for cid, token in TOKENS.items()}
    connections["registry"] = connection(
        "registry", type_="container-registry", spec={"registry": "registry.example.com"},
        credential={"username": USER, "password": REGISTRY_PASSWORD})
    return make_repo(tmp_path_factory.mktemp("github-output") / "repo",
                     connections=connections,
                     pipelines={"ci": pipeline("ci", *connections),
                                 "small": pipeline("small", "pct")})


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def render_github(repo: Path, tmp_path: Path, before: str, pipeline_id: str = "ci",
                  **extra: str) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    out, github_env = tmp_path / "out", tmp_path / "github_env"
    github_env.write_text(before)
    proc = connc("render", pipeline_id, "--repo", repo, "--out", out, "--format", "github",
                 env=key_env(GITHUB_ENV=str(github_env), **extra), timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc, out, github_env


def test_github_format_as_the_runner_reads_it(repo: Path, tmp_path: Path) -> None:
    proc, out, github_env = render_github(repo, tmp_path, "PREV=value", GIT_CONFIG_COUNT="2")
    commands = [c for c in map(parse_command, log_lines(proc.stdout)) if c is not None]
    masks = {data for name, _props, data in commands if name == "add-mask"}
    warnings = [data for name, _props, data in commands if name == "warning"]

    # Every secret and derived form is registered exactly as the runner unescapes it.
    expected = set()
    for secret in [*LONG, REGISTRY_PASSWORD]:
        expected |= {secret, quote(secret, safe=""), _b64(secret)}
    expected |= {_b64(f"oauth2:{t}") for t in TOKENS.values()}  # git's basic auth
    expected.add(_b64(f"{USER}:{REGISTRY_PASSWORD}"))  # docker's auth field
    assert expected <= masks
    assert "p%x-secret-9f1" not in masks  # what an unescaped `%25` would have registered
    # Too short to mask: neither the secret nor a form of it, and one warning each.
    assert all(len(mask.strip()) >= 4 for mask in masks)
    assert {"a", "%25", "%"}.isdisjoint(masks)
    assert len(warnings) == 2 and all("shorter than 4 characters" in w for w in warnings)
    assert all("a secret of connection `" in w for w in warnings)  # which one to rotate

    # Outside the mask commands nothing shows a secret (the short ones aside: `a` is
    # everywhere); the warnings name no value.
    printed = [line for line in log_lines(proc.stdout) if not line.startswith("::add-mask::")]
    for form in sorted(masks):
        assert not any(form in line for line in printed), form
        assert form not in proc.stderr and form not in github_env.read_text()

    # $GITHUB_ENV: PREV is intact, every entry of ours is a heredoc with its own delimiter.
    text = github_env.read_text()
    assert text.startswith("PREV=value\n")
    entries = parse_env_file(text)
    assert entries[0] == ("PREV", "value")
    assigned = dict(entries[1:])
    assert len(assigned) == len(entries) - 1
    assert assigned["GIT_ASKPASS"] == f"{out}/git/askpass"
    assert assigned["CONNC_BUNDLE"] == str(out)
    assert assigned["DOCKER_CONFIG"] == f"{out}/docker"
    assert (assigned["GIT_CONFIG_KEY_2"], assigned["GIT_CONFIG_VALUE_2"],
            assigned["GIT_CONFIG_COUNT"]) == ("include.path", f"{out}/git/config", "3")
    delimiters = re.findall(r"^[A-Z0-9_]+<<(.*)$", text, re.MULTILINE)
    assert len(delimiters) == len(assigned) == len(set(delimiters))
    assert all(re.fullmatch(r"ghadelimiter_[0-9a-f]{32}", d) for d in delimiters)


@pytest.mark.parametrize(("before", "inherited", "index", "warned"), [
    ("", "010", "10", False),  # decimal, as git reads it
    ("EARLIER=step\n", "a[$(touch pwned)]", "0", True),
])
def test_github_env_appends_cleanly_and_takes_the_count_as_digits_only(
        repo: Path, tmp_path: Path, before: str, inherited: str, index: str,
        warned: bool) -> None:
    proc, out, github_env = render_github(repo, tmp_path, before, "small",
                                          GIT_CONFIG_COUNT=inherited)
    text = github_env.read_text()
    assert text.startswith(before) and not text[len(before):].startswith("\n")
    assigned = dict(parse_env_file(text))
    assert assigned[f"GIT_CONFIG_KEY_{index}"] == "include.path"
    assert assigned["GIT_CONFIG_COUNT"] == str(int(index) + 1)
    warnings = [c[2] for c in map(parse_command, log_lines(proc.stdout))
                if c is not None and c[0] == "warning"]
    assert warnings == ([COUNT_WARNING] if warned else [])
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


# --- the env file in real shells ---------------------------------------------------------------

SHELLS = [shell for shell in ("sh", "dash", "bash") if shutil.which(shell)]


@pytest.fixture(scope="module")
def env_file(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shell") / "out"
    proc = connc("render", "small", "--repo", repo, "--out", out, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return out / "env"


def _source(shell: str, env_file: Path, cwd: Path,
            **environ: str) -> subprocess.CompletedProcess[str]:
    """Source the env file in `shell`, then print git's view of its config and the count."""
    script = ('. "$1" && printf "%s\\n" "$GIT_CONFIG_COUNT" && '
              'git config --get-regexp "^(user-entry|include)\\."')
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1", **environ}
    return subprocess.run([shell, "-c", script, shell, str(env_file)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("shell", SHELLS)
def test_an_inherited_count_runs_nothing_and_keeps_the_users_entries(
        shell: str, env_file: Path, tmp_path: Path) -> None:
    include = f"include.path {env_file.parent}/git/config"
    # An expression in the count: pattern-matched, never evaluated; connc's entry goes to 0.
    proc = _source(shell, env_file, tmp_path, GIT_CONFIG_COUNT="a[$(touch pwned)]")
    assert not (tmp_path / "pwned").exists()
    assert proc.returncode == 0 and proc.stdout.splitlines() == ["1", include]
    assert proc.stderr == f"connc: warning: {COUNT_WARNING}\n"
    # A leading zero is decimal, as git reads it (bash's $((010)) is 8): entries 0..9 stay.
    users = {f"GIT_CONFIG_KEY_{i}": f"user-entry.k{i}" for i in range(10)}
    users |= {f"GIT_CONFIG_VALUE_{i}": str(i) for i in range(10)}
    proc = _source(shell, env_file, tmp_path, GIT_CONFIG_COUNT="010", **users)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["11", *(f"user-entry.k{i} {i}" for i in range(10)),
                                        include]
    # The common case: the user's own two entries stay, the bundle's comes third.
    proc = _source(shell, env_file, tmp_path, GIT_CONFIG_COUNT="2", GIT_CONFIG_KEY_0="user-entry.a",
                   GIT_CONFIG_VALUE_0="kept", GIT_CONFIG_KEY_1="user-entry.b",
                   GIT_CONFIG_VALUE_1="kept")
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.splitlines() == ["3", "user-entry.a kept", "user-entry.b kept", include]


def test_the_old_arithmetic_would_have_run_the_command(tmp_path: Path) -> None:
    """Control: the exploit is real in bash, so the test above can tell."""
    if not shutil.which("bash"):
        pytest.skip("no bash")
    subprocess.run(["bash", "-c", 'n=${GIT_CONFIG_COUNT:-0}; echo $((n + 1))'], cwd=tmp_path,
                   env={"PATH": "/usr/bin:/bin", "GIT_CONFIG_COUNT": "a[$(touch pwned)]"},
                   capture_output=True, timeout=30, check=False)
    assert (tmp_path / "pwned").exists()

