"""The entry point: `connc render`'s plain command lines skip click, and parse as click would."""

from __future__ import annotations

import signal
import sys

import click
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connc.__main__ import RENDER_FORMATS, RENDER_OPTIONS, fast_render_options
from connc.cli import cli
from connc.render.run import TIMEOUT_RANGE

WORDS = st.sampled_from([*RENDER_OPTIONS, *(f"{o}=x" for o in RENDER_OPTIONS), "--help", "-h",
                         "--pipline", "--", "api", "api-release", "-x", "a b", "json",
                         "github", "shell", "yaml", "/tmp/out", "", "render", "10", "1", "0.5",
                         "3600", "3601", "1e3", "nan", "-5", "--timeout=30", "--timeout=inf"])


def click_parse(argv: list[str]) -> dict[str, str | float | None] | None:
    """What click's `render` command would call `render.run.command` with, or None."""
    try:
        context = cli.commands["render"].make_context("render", list(argv[1:]))
    except (click.exceptions.Exit, click.ClickException):
        return None
    params = context.params
    if (params["pipeline_argument"] is None) == (params["pipeline_option"] is None):
        return None  # the command itself refuses this
    pipeline = params["pipeline_argument"]
    parsed = {"pipeline_id": pipeline if pipeline is not None else params["pipeline_option"],
              "repo": params["repo"], "out": params["out"],
              "output_format": params["output_format"]}
    if params["timeout"] is not None:
        parsed["timeout"] = params["timeout"]
    return parsed


@settings(max_examples=400, deadline=None)
@given(st.lists(WORDS, max_size=6))
def test_the_fast_path_agrees_with_click(words: list[str]) -> None:
    argv = ["render", *words]
    fast = fast_render_options(argv)
    if fast is not None:  # what the fast path takes, click takes the same way
        assert fast == click_parse(argv)


def test_the_documented_forms_take_the_fast_path() -> None:
    assert fast_render_options(["render", "api", "--out", "/o"]) == {
        "pipeline_id": "api", "repo": None, "out": "/o", "output_format": "shell"}
    assert fast_render_options(["render", "--pipeline=api", "--format", "github",
                                "--repo", "r"]) == {
        "pipeline_id": "api", "repo": "r", "out": None, "output_format": "github"}
    assert set(RENDER_FORMATS) == set(cli.commands["render"].params[4].type.choices)
    timeout = next(p for p in cli.commands["render"].params if p.name == "timeout")
    assert (timeout.type.min, timeout.type.max) == TIMEOUT_RANGE  # type: ignore[attr-defined]
    assert fast_render_options(["render", "api", "--timeout", "30"]) == {
        "pipeline_id": "api", "repo": None, "out": None, "output_format": "shell",
        "timeout": 30.0}


def test_anything_else_goes_to_click() -> None:
    for argv in (["validate"], ["render"], ["render", "--help"], ["render", "a", "b"],
                 ["render", "a", "--pipeline", "b"], ["render", "a", "--format", "yaml"],
                 ["render", "a", "--out"], ["render", "a", "--bogus", "x"]):
        assert fast_render_options(argv) is None, argv


def test_an_interrupt_after_the_work_ends_the_process_without_a_traceback(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a command is done, Ctrl-C or SIGTERM during the interpreter's shutdown ends the
    process as by default: raised as KeyboardInterrupt there, threading prints a traceback."""
    from connc import __main__ as entry

    monkeypatch.setattr(sys, "argv", ["connc", "--version"])
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit):
            entry.main()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])
