"""README.md's quick start ("Start your own") runs as written, in a terminal: each `$` line in
order, in an empty directory with a private $HOME, the token typed at connc's hidden prompt.
The install line is the one line not run here: tests/author/test_installed.py installs this
working tree as it says. Nothing secret is left in the repository or shown on the terminal."""

from __future__ import annotations

import os
import pty
import re
import select
import sys
import time
from pathlib import Path

from kit.build import REPO_ROOT, sops_env
from kit.run import connc

TOKEN = "glpat-quick-start-canary-5e1f"


def quick_start() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## Start your own"):]
    block = re.search(r"^```console\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert block is not None
    return [line[2:] for line in block.group(1).splitlines() if line.startswith("$ ")]


def in_a_terminal(script: str, cwd: Path, env: dict[str, str],
                  answers: dict[str, str]) -> tuple[int, str]:
    """Run `script` in bash on a pseudo-terminal, typing each answer when its prompt shows."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal is its controlling terminal (getpass reads it)
        try:
            os.chdir(cwd)
            os.execve("/bin/bash", ["bash", "-c", script], env)
        finally:
            os._exit(127)
    seen, deadline, pending = b"", time.monotonic() + 180, dict(answers)
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child ended: EIO on Linux
                break
            if not chunk:
                break
            seen += chunk
            for prompt in list(pending):
                if seen.rstrip().endswith(prompt.encode()):
                    os.write(fd, (pending.pop(prompt) + "\n").encode())
        else:
            os.kill(pid, 9)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), seen.decode("utf-8", "replace")


def test_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    install, *steps = quick_start()
    assert install.startswith("pipx install ./connc")
    home = tmp_path / "home"
    home.mkdir()
    env = {key: value for key, value in sops_env().items()
           if not key.startswith(("SOPS_", "GIT_", "CONNC_"))}
    env.update(HOME=str(home), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
               GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=str(home / ".gitconfig"), TERM="dumb")
    script = "set -euo pipefail\n" + "\n".join(steps)
    code, terminal = in_a_terminal(script, tmp_path, env,
                                   {"token:": TOKEN, "token (again):": TOKEN})
    assert code == 0, terminal
    assert TOKEN not in terminal  # typed without echo, never printed back
    key = home / ".config" / "connc" / "age.txt"
    assert key.stat().st_mode & 0o777 == 0o600
    identity = key.read_text().splitlines()[-1]
    assert identity.startswith("AGE-SECRET-KEY-1") and identity not in terminal
    assert "0 errors, 0 warnings" in terminal  # validate --strict, the last step

    repo = tmp_path / "connections"
    # The token is in the file, encrypted to the key init wrote, which connc finds...
    ran = connc("sops", "decrypt", "--extract", '["credential"]["token"]',
                "connections.d/gitlab-main.sops.yaml", env=env, cwd=repo, timeout=60)
    assert (ran.returncode, ran.stdout) == (0, TOKEN), ran.stderr
    # ...and no file of the repository, tracked or not, holds a secret in clear.
    for path in repo.rglob("*"):
        if path.is_file() and ".git" not in path.relative_to(repo).parts:
            text = path.read_bytes()
            assert TOKEN.encode() not in text and identity.encode() not in text, path
