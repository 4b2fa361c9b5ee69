"""The entry point (`connc`, `python -m connc`): one place maps every outcome to an exit code.

`connc render` is the command every pipeline start waits on, and importing click costs a
sixth of it. So a plain `render` command line (the documented options, each once, nothing
else) is parsed here without click; anything else — `--help`, a typo, a missing value — goes
to the click group in `connc.cli`, which parses and reports it as for every command. A test
holds the two parsers to the same result on generated command lines.
"""

from __future__ import annotations

import errno
import os
import signal
import sys

from connc.errors import ConncError, ExitCode, UsageError

# render's options (as `connc.cli.render` declares them) -> parameter name; and choices.
RENDER_OPTIONS = {"--pipeline": "pipeline_id", "--repo": "repo", "--out": "out",
                  "--format": "output_format", "--timeout": "timeout"}
RENDER_FORMATS = ("shell", "json", "github")
_RENDER_DEFAULTS: dict[str, str | float | None] = {"repo": None, "out": None,
                                                    "output_format": "shell"}


def fast_render_options(argv: list[str]) -> dict[str, str | float | None] | None:
    """render's parameters from a plain command line, or None to leave it to click."""
    if not argv or argv[0] != "render":
        return None
    options: dict[str, str | float | None] = {}
    rest = argv[1:]
    while rest:
        word, rest = rest[0], rest[1:]
        name, equals, value = word.partition("=")
        if name in RENDER_OPTIONS:
            if not equals:
                if not rest:
                    return None
                value, rest = rest[0], rest[1:]
        elif not word.startswith("-") and "pipeline_id" not in options:
            name, value = "--pipeline", word  # `connc render ID`
        else:
            return None
        # click refuses an option's value that looks like an option; let it say so.
        if value.startswith("-") or RENDER_OPTIONS[name] in options:
            return None
        options[RENDER_OPTIONS[name]] = value
    if "pipeline_id" not in options or options.get("output_format", "shell") not in RENDER_FORMATS:
        return None
    if "timeout" in options:
        seconds = _seconds(str(options["timeout"]))
        if seconds is None:
            return None
        options["timeout"] = seconds
    return {**_RENDER_DEFAULTS, **options}


def _seconds(value: str) -> float | None:
    """--timeout as click's FloatRange takes it, or None (click then says what is wrong)."""
    import math

    from connc.render.run import TIMEOUT_RANGE

    try:
        seconds = float(value)
    except ValueError:
        return None
    low, high = TIMEOUT_RANGE
    return seconds if math.isfinite(seconds) and low <= seconds <= high else None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run(argv: list[str]) -> int:
    options = fast_render_options(argv)
    if options is not None:
        from connc.render.run import command

        command(**options)  # type: ignore[arg-type]
        return ExitCode.OK
    from connc.cli import run

    return run(argv)


# An OSError that reaches this point is the system's refusal, not a bug of connc, when it names
# a path (a directory given that is a file, a name too long, a place nothing can be made) or
# has one of these numbers: a full disk or standard output (/dev/full), a quota, a read-only
# file system, an I/O error, a descriptor closed under it, no descriptors or memory left.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO,
                                errno.EBADF, errno.EMFILE, errno.ENFILE, errno.ENOMEM})


def main() -> None:
    # A cancelled CI job sends SIGTERM: unwind like Ctrl-C, so that every `finally` runs
    # (no half-written bundle or staging directory, sops children reaped, tokens revoked).
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if sys.stdout is None or sys.stderr is None:
            # Closed when connc started (`>&-`): nothing could be reported, and the first file
            # connc opens would take its descriptor, for a child's output to land in.
            raise UsageError("standard output or standard error is closed; connc writes its "
                             "results and errors there")
        code = _run(sys.argv[1:])
        sys.stdout.flush()  # here, not at exit: output that cannot be written fails the command
    except ConncError as exc:
        _say(f"connc: error: {exc}")
        code = exc.exit_code
    except KeyboardInterrupt:
        _say("connc: interrupted")
        code = ExitCode.INTERRUPTED
    except BrokenPipeError:
        code = ExitCode.OK
    except OSError as exc:
        if exc.filename is None and exc.errno not in ENVIRONMENT_ERRNOS:
            code = _internal(exc)
        else:
            _say(f"connc: error: {_refused(exc)}")
            code = ExitCode.USAGE
    except Exception as exc:  # noqa: BLE001 - the one place that turns a bug into exit 3
        code = _internal(exc)
    _drop_unwritable_output()
    # The work is done: a SIGTERM or Ctrl-C from here on ends the process as by default,
    # rather than raising KeyboardInterrupt into the interpreter's shutdown (where threading
    # prints a traceback on stderr).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(code)


def _internal(exc: BaseException) -> int:
    # The message of an unexpected exception could quote a value; show where, not what.
    import traceback

    frame = traceback.extract_tb(exc.__traceback__)[-1]
    where = f"{os.path.basename(frame.filename)}:{frame.lineno}"
    _say(f"connc: internal error ({type(exc).__name__} at {where}); please report it")
    return ExitCode.INTERNAL


def _refused(exc: OSError) -> str:
    if exc.filename is None:
        return f"cannot write its output or a file: {exc.strerror}"
    from connc.findings import printable  # redacted and without control characters

    return f"{printable(os.fsdecode(exc.filename), 300)}: {exc.strerror}"


def _say(line: str) -> None:
    """A line on stderr, if stderr can take it."""
    try:
        if sys.stderr is not None:
            print(line, file=sys.stderr)
    except OSError:
        pass


def _drop_unwritable_output() -> None:
    # Output that could not be written stays buffered; flushed again at exit, it would fail
    # again, print a traceback and turn the exit code into Python's 120. It goes nowhere now.
    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue
        try:
            stream.flush()
        except OSError:
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
                stream.flush()
            except (OSError, ValueError):
                pass


if __name__ == "__main__":
    main()
