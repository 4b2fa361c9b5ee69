"""A probe's tool runs obey its deadline and an interrupt, as its requests do (connc.http)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from connc import process
from connc.check.probe import Context, ProbeFailure


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "env").write_text("")
    return out


def test_an_interrupt_kills_a_tool_run_at_once(bundle: Path, tmp_path: Path) -> None:
    cancel = process.Cancel()
    context = Context(tmp_path, 60, process.Deadline(60, cancel=cancel))
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(ProbeFailure, match="interrupted"):
        context.run(bundle, ["sleep", "30"])
    assert time.monotonic() - started < 3
    with pytest.raises(ProbeFailure, match="interrupted"):  # and none starts afterwards
        context.run(bundle, ["true"])


def test_a_tool_run_ends_at_the_probe_deadline(bundle: Path, tmp_path: Path) -> None:
    context = Context(tmp_path, 1, process.Deadline(0.5))
    started = time.monotonic()
    with pytest.raises(ProbeFailure, match="timeout: sleep did not finish within the probe's"):
        context.run(bundle, ["sleep", "30"])
    assert time.monotonic() - started < 3
    with pytest.raises(ProbeFailure, match="timeout: the probe did not finish within 1 s"):
        context.run(bundle, ["true"])


def test_tools_never_proxy_loopback(bundle: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    monkeypatch.delenv("no_proxy", raising=False)
    ran = Context(tmp_path, 5).run(bundle, ["sh", "-c", 'echo "$NO_PROXY|$no_proxy|$HTTPS_PROXY"'])
    upper, lower, proxy = ran.stdout.strip().split("|")
    assert upper.startswith("internal.example,localhost,") and "127.0.0.1" in upper
    assert "127.0.0.1" in lower and "::1" in lower
    assert proxy == "http://proxy.example:3128"  # other hosts keep the checker's proxy
