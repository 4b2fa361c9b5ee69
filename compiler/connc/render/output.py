"""What `connc render` prints: the env file, the manifest, or GitHub Actions commands."""

from __future__ import annotations

import json
import os
import sys

from connc.errors import UsageError
from connc.render.context import Output
from connc.render.envfile import env_file, github_env_lines


def check_format(output_format: str) -> None:
    """Refuse a format the environment cannot take, before the bundle is rendered."""
    if output_format == "github" and not os.environ.get("GITHUB_ENV"):
        raise UsageError("--format github needs $GITHUB_ENV (it runs inside GitHub Actions)")


def emit(output: Output, manifest: dict[str, object], output_format: str) -> None:
    if output_format == "json":
        sys.stdout.write(json.dumps(manifest, indent=2) + "\n")
    elif output_format == "github":
        check_format(output_format)
        github_env = os.environ["GITHUB_ENV"]
        # The one place a secret is printed, by design: the runner hides every masked string.
        for secret in sorted(output.masks, key=len, reverse=True):
            if secret and "\n" not in secret and "\r" not in secret:  # see Output.mask
                sys.stdout.write(f"::add-mask::{secret}\n")
        with open(github_env, "a", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in github_env_lines(output, os.environ)))
        sys.stdout.write(f"connc: bundle for {output.pipeline} in {output.out}\n")
    else:
        sys.stdout.write(env_file(output))
    sys.stderr.write(f"connc: wrote the bundle of pipeline {output.pipeline} to {output.out}; "
                     f"load it with: . {output.out}/env\n")
