"""What `connc render` prints: the env file, the manifest, or GitHub Actions commands."""

from __future__ import annotations

import json
import os
import sys

from connc.errors import ConncError, UsageError
from connc.findings import workflow_command
from connc.render.context import Output
from connc.render.envfile import env_file, github_env_lines


def check_format(output_format: str) -> None:
    """Refuse a format the environment cannot take, before the bundle is rendered."""
    if output_format == "github" and not os.environ.get("GITHUB_ENV"):
        raise UsageError("--format github needs $GITHUB_ENV (it runs inside GitHub Actions)")


def _append_github_env(path: str, lines: list[str]) -> None:
    """Append to $GITHUB_ENV on a line of our own, in one write.

    An earlier step may have left the file without a final newline (`PREV=value`): written
    straight after it, our first line would become part of PREV's value and be lost.
    """
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    with open(path, "a+b") as handle:  # append + read: the last byte, then our lines after it
        if handle.seek(0, os.SEEK_END) > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                data = b"\n" + data
        handle.write(data)


def _github(output: Output) -> None:
    check_format("github")
    warnings = [f"{where} is shorter than {Output.MIN_MASK_LENGTH} characters: GitHub cannot "
                f"mask it without hiding that text everywhere in the log, so it is not masked "
                f"and shows if printed; rotate it to a longer value" for where in output.unmasked]
    env_lines = github_env_lines(output, os.environ, warnings.append)
    # The one place a secret is printed, by design: the runner hides every masked string.
    # Output.mask registers maskable forms only; pip's userinfo is added directly, so check
    # again. Longest first, then by text, for a stable output.
    forms = sorted((f for f in output.masks if Output.maskable(f)), key=lambda f: (-len(f), f))
    sys.stdout.write("".join(workflow_command("add-mask", form) for form in forms))
    sys.stdout.write("".join(workflow_command("warning", w, title="connc") for w in warnings))
    _append_github_env(os.environ["GITHUB_ENV"], env_lines)
    sys.stdout.write(f"connc: bundle for {output.pipeline} in {output.out}\n")


def emit(output: Output, manifest: dict[str, object], output_format: str) -> None:
    """Hand the bundle over: print it as `output_format` says. When that fails (stdout full or
    closed, $GITHUB_ENV unwritable), nothing tells the caller where the bundle is, or loads it:
    it is revoked and removed, and render fails as the environment's fault (exit 2)."""
    try:
        if output_format == "json":
            sys.stdout.write(json.dumps(manifest, indent=2) + "\n")
        elif output_format == "github":
            _github(output)
        else:
            sys.stdout.write(env_file(output))
        sys.stdout.flush()  # a full stdout fails here, while the bundle can still be taken back
    except OSError as error:
        _withdraw(output)
        raise UsageError(f"the bundle could not be handed over ({error.strerror}: standard "
                         f"output{', $GITHUB_ENV' if output_format == 'github' else ''}), so it "
                         f"was removed; nothing would have loaded it") from None
    try:
        sys.stderr.write(f"connc: wrote the bundle of pipeline {output.pipeline} to "
                         f"{output.out}; load it with: . {output.out}/env\n")
    except OSError:
        pass  # a note for people; the bundle is handed over


def _withdraw(output: Output) -> None:
    from connc.render.clean import clean, tell

    try:
        tell(clean(output.out))
    except (ConncError, OSError):
        pass  # what is left, the next render or clean of OUT removes
