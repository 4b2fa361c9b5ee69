"""Hostile stand-ins for sops: one that hangs, crashes midway, prints garbage, floods its
output or eats memory, and one that records each call and then runs the real sops.

connc finds sops with `connc.sops.binary.executable()`. In-process tests monkeypatch it (`use`); a
subprocess runs connc's real entry point behind a two-line bootstrap that does the same
(`kit.run.argv`), so signals, exit codes and output are exactly what a user gets. Each fake
writes its pid to `FAKE_PIDS` (a directory) before it misbehaves, so a test can wait for it
to be running and then prove that nothing of it is left.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from connc.sops import binary

REAL = binary.executable()  # before any test points connc elsewhere

# Printed by the fakes on stdout and stderr, as a value sops could quote: never shown by connc.
SENTINEL = "SENTINEL-fake-sops-3c9d1e"

_PROLOGUE = """#!/bin/sh
echo $$ > "$FAKE_PIDS/$$"
for arg; do case "$arg" in connections.d/*) file="$arg";; esac; done
"""

BEHAVIOURS = {
    # An unreachable KMS: sops waits forever.
    "hang": 'exec sleep 600\n',
    # Half an answer, then a crash: half a JSON document on stdout, half a file written.
    "crash": f"""printf '{{"credential": {{"token": "{SENTINEL}'
printf 'panic: {SENTINEL}\\n' >&2
case " $* " in *" decrypt "*) ;; *) [ -n "$file" ] && printf 'half a file' > "$file";; esac
kill -SEGV $$
""",
    # Exit 0 with bytes that are no document at all.
    "garbage": f"""head -c 3000 /dev/urandom
printf '\\n{SENTINEL}\\n'
printf '{SENTINEL}\\n' >&2
head -c 3000 /dev/urandom >&2
exit 0
""",
    # A failure whose stderr mimics sops' known lines with a value in them.
    "garbage-failure": f"""printf 'Error unmarshalling input yaml: yaml: line 3: {SENTINEL}\\n' >&2
printf 'sops metadata not found {SENTINEL}\\n' >&2
exit 1
""",
    # Output without end.
    "flood": 'exec cat /dev/zero\n',
    # Half a file written, then a hang: stopped by the deadline or a signal, the file must
    # come back whole.
    "half-then-hang": """[ -n "$file" ] && printf 'half a file' > "$file"
exec sleep 600
""",
}


def write(directory: Path, behaviour: str, *, only: str | None = None) -> Path:
    """The fake sops executable for `behaviour`: a key of BEHAVIOURS; "eat-memory"; "record"
    (log the call to $FAKE_LOG, then run the real sops); or "slow" (log its start and end to
    $FAKE_LOG around a 0.3 s sleep, then run the real sops). `only`: misbehave for this sops
    command (decrypt, set, updatekeys, ...) alone, and be the real sops for the others."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"sops-{behaviour}-{only or 'all'}"
    if behaviour == "eat-memory":
        # 64 MiB at a time, zero-filled (so really mapped), until the system says no; the
        # high-water mark goes to a file, where the test reads how far it got.
        path.write_text(f"""#!{sys.executable}
import os
with open(os.path.join(os.environ["FAKE_PIDS"], str(os.getpid())), "w") as f:
    f.write(str(os.getpid()))
held = []
try:
    while True:
        held.append(bytearray(64 * 1024 * 1024))
        with open(os.environ["FAKE_PIDS"] + "/memory", "w") as f:
            f.write(str(len(held) * 64 * 1024 * 1024))
        if len(held) > 64:
            raise SystemExit("no limit: 4 GiB allocated")
except MemoryError:
    raise SystemExit(1)
""", encoding="utf-8")
    elif behaviour == "record":
        path.write_text(f"""#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_LOG"
exec {REAL} "$@"
""", encoding="utf-8")
    elif behaviour == "slow":
        path.write_text(f"""#!/bin/sh
echo "$(date +%s%N) start" >> "$FAKE_LOG"
sleep 0.3
echo "$(date +%s%N) end" >> "$FAKE_LOG"
exec {REAL} "$@"
""", encoding="utf-8")
    else:
        real = (f'case " $* " in *" {only} "*) ;; *) exec {REAL} "$@";; esac\n'
                if only else "")
        path.write_text("#!/bin/sh\n" + real + _PROLOGUE.removeprefix("#!/bin/sh\n")
                        + BEHAVIOURS[behaviour], encoding="utf-8")
    path.chmod(0o755)
    return path


def use(monkeypatch: pytest.MonkeyPatch, fake: Path, pids: Path) -> None:
    """In this process: connc runs `fake` for sops; its pids go to `pids`."""
    pids.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(binary, "executable", lambda: str(fake))
    monkeypatch.setenv("FAKE_PIDS", str(pids))


# Runs connc's own entry point with `binary.executable` pointed at argv[1].
def started(pids: Path) -> list[int]:
    return [int(p.name) for p in pids.iterdir() if p.name.isdigit()] if pids.exists() else []


def wait_for(pids: Path, count: int, seconds: float = 30.0) -> list[int]:
    """The pids of `count` fakes, once that many have started."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        found = started(pids)
        if len(found) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"{count} fake sops processes did not start within {seconds} s "
                         f"(started: {started(pids)})")


def alive(pid: int) -> bool:
    """Running (a zombie, whose parent has not reaped it yet, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def none_left(pids: Iterable[int], seconds: float = 5.0) -> bool:
    """True when none of `pids` runs any more (within `seconds`: the kernel's SIGKILL of a
    dead parent's children is not instant)."""
    end = time.monotonic() + seconds
    pids = list(pids)
    while any(alive(pid) for pid in pids):
        if time.monotonic() > end:
            for pid in pids:  # a failed test must not leave them behind either
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            return False
        time.sleep(0.02)
    return True
