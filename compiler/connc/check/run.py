"""`connc check`: verify connections against their services, from this machine's network.

An admin's (or owner's) tool, run with a sops key: each selected connection is read and
schema-checked as render reads it, decrypted, and handed to the probe of its type (one
module per service family, behind the `Probe` protocol). Scope of use is not involved: whoever holds a key that decrypts a file can
read its credential anyway. A file this key cannot decrypt is "not checked", which is not a
failure of its service.

Everything a probe writes (bundles, a CA file, a client key) goes in a private temp dir that
is removed when the probe ends, and the whole dir when the run ends, also on Ctrl-C or
SIGTERM; a GitHub token minted by a probe is revoked by that probe.

`--timeout` is each probe's whole budget: its requests (connc.http) and tool runs share one
deadline. The decryptions (sops) of the whole run share another, `DECRYPT_TIMEOUT` seconds
from its start (with --reach, the run's one deadline bounds them too). An interrupt cancels
every probe at once (requests shut down, tool process groups killed), waits a short grace
for them to clean up, and returns.

`each_connection` (select, read, decrypt, a private work dir, the worker threads, the
clean-up) is also how `--reach` visits connections (`reach_run`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar, cast

from connc import credentials, http, process, repository, seal
from connc.check import secretless
from connc.check.probe import Context, Probe, ProbeFailure
from connc.errors import ConncError, ExitCode, SopsError, UsageError
from connc.findings import printable, suggest
from connc.render import inputs
from connc.render.context import Resolved
from connc.schema import connection_types
from connc.schema.policy import secretless as secretless_spec
from connc.sops import keys

OK, FAILED, NOT_CHECKED, SKIPPED = "ok", "failed", "not checked", "skipped"
_WORKERS = 8  # also the sops processes at once: one decryption per worker
# Seconds for every decryption of a run together (a probe's own budget is --timeout).
DECRYPT_TIMEOUT = 600.0
# After an interrupt, how long probes get to finish their clean-up (remove their files,
# revoke a minted token) before the command ends without them. Cancelled requests and killed
# tools end in milliseconds; this bounds a revocation under way, or a probe still in sops.
_STOP_GRACE = 2.0
# Each type's probe, as `schema.connection_types` names it: imported here, before any worker.
PROBES: dict[str, Probe] = {name: cast(Probe, module)
                            for name, module in connection_types.modules("probe").items()}
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Outcome:
    id: str
    type: str | None  # None when the file could not be read
    status: str  # ok | failed | not checked
    message: str
    target: str | None = None  # the URL the probe asked


def run(root: Path, ids: Sequence[str], output_format: str, timeout: float,
        out: TextIO = sys.stdout, err: TextIO = sys.stderr, *,
        id_token_file: Path | None = None) -> ExitCode:
    """The command: check, report, and the exit code."""
    outcomes = check(root, ids, timeout=timeout, id_token_file=id_token_file)
    if output_format == "json":
        json.dump({"connections": [dataclasses.asdict(o) for o in outcomes],
                   "summary": _counts(outcomes)}, out, indent=2)
        out.write("\n")
    else:
        _text(outcomes, out)
        counts = _counts(outcomes)
        print(f"connc: {counts[OK]} ok, {counts[FAILED]} failed, "
              f"{counts[NOT_CHECKED]} not checked"
              + (f", {counts[SKIPPED]} skipped" if counts[SKIPPED] else ""), file=err)
    if not outcomes:
        print("connc: no connections to check", file=err)
    elif all(o.status == NOT_CHECKED for o in outcomes):
        print("connc: no connection could be decrypted here; set a sops key "
              "(SOPS_AGE_KEY_FILE, ...) that is one of their recipients", file=err)
        return ExitCode.USAGE
    return ExitCode.FINDINGS if any(o.status == FAILED for o in outcomes) else ExitCode.OK


def check(root: Path, ids: Sequence[str], *, timeout: float,
          id_token_file: Path | None = None) -> list[Outcome]:
    """One outcome per connection: the given ids, or every connection when none is given.
    Secretless connections get their ID token from `id_token_file`, else from the CI job this
    runs in; elsewhere they are skipped."""
    def act(resolved: Resolved, _data: dict[str, Any], workdir: Path,
            cancel: process.Cancel) -> Outcome:
        return _probe(resolved, workdir, timeout, cancel, id_token_file)

    return each_connection(root, select(root, ids), act, lambda outcome: outcome,
                           deadline=process.Deadline(DECRYPT_TIMEOUT))


def each_connection(root: Path, selected: Sequence[str],
                    act: Callable[[Resolved, dict[str, Any], Path, process.Cancel], T],
                    refused: Callable[[Outcome], T], *, deadline: process.Deadline) -> list[T]:
    """`act` on each selected connection, read as render reads it and decrypted, in parallel.

    `act` gets the connection decrypted (its seal verified), its checked document, a private
    work directory (removed when it returns) and the run's `Cancel`. A connection that cannot
    be read or decrypted, or whose `act` raises, becomes `refused(outcome)`. `deadline`
    bounds the decryptions of the whole run; its `cancel` is the run's, which an interrupt
    sets: it stops the decryptions (sops) and the probes alike.
    """
    if not selected:
        return []
    inputs.refuse_checkout(root, [*repository.TOP_FILES,
                                  *(repository.connection_path(cid) for cid in selected)])
    settings = inputs.policy(root)
    workdir = Path(tempfile.mkdtemp(prefix="connc-check-"))  # 0700
    cancel = deadline.cancel
    futures: list[concurrent.futures.Future[T]] = [concurrent.futures.Future()
                                                    for _ in selected]
    jobs = iter(list(zip(selected, futures, strict=True)))
    lock = threading.Lock()

    def one(connection_id: str) -> T:
        return _check_one(root, connection_id, workdir / connection_id, settings, cancel, act,
                          refused, deadline)

    def worker() -> None:
        while not cancel.is_set():
            with lock:
                connection_id, future = next(jobs, (None, None))
            if connection_id is None or future is None:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(one(connection_id))
            except BaseException as error:  # noqa: BLE001 - re-raised by result() below
                future.set_exception(error)

    # Daemon threads, not a ThreadPoolExecutor: the executor's workers are joined at
    # interpreter exit even after shutdown(wait=False), so one probe stuck where no cancel
    # reaches (a revocation, up to its own timeout) would hold the process after an interrupt.
    for n in range(min(_WORKERS, len(selected))):
        threading.Thread(target=worker, name=f"connc-check-{n}", daemon=True).start()
    try:
        # SIGTERM arrives as KeyboardInterrupt (cli.main), like Ctrl-C; result() waits in a
        # lock acquire, which a signal interrupts.
        return [future.result() for future in futures]
    finally:
        try:
            if not all(future.done() for future in futures):  # an interrupt, or a crash
                # Start no other probe, end the running ones now (their requests shut
                # down, their tools killed), then give them a moment to remove their files
                # and revoke what they minted. One that needs longer is left behind: the
                # command ends at once, its token expires within the hour, and the whole
                # work directory goes below.
                for future in futures:
                    future.cancel()
                cancel.set()
                concurrent.futures.wait(futures, timeout=_STOP_GRACE)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def select(root: Path, ids: Sequence[str]) -> list[str]:
    """The given ids (each an existing connection, else a usage error), or every one."""
    if not ids:
        return repository.ids(root, "connection")
    unknown = [i for i in ids if not repository.is_id(i)
               or not repository.present(root / repository.connection_path(i))]
    if unknown:
        known = repository.ids(root, "connection")
        raise UsageError("no such connection: " + ", ".join(
            f"{i} (no {repository.connection_path(i)}{suggest(i, known)})"
            if repository.is_id(i) else f"{printable(i, 80)} (not a connection id)"
            for i in unknown))
    return list(dict.fromkeys(ids))


def _check_one(root: Path, connection_id: str, workdir: Path, settings: inputs.Policy,
               cancel: process.Cancel,
               act: Callable[[Resolved, dict[str, Any], Path, process.Cancel], T],
               refused: Callable[[Outcome], T], deadline: process.Deadline) -> T:
    relpath = repository.connection_path(connection_id)
    try:
        data = inputs.read_connection(root, connection_id, settings)  # as render reads it
    except ConncError as error:
        return refused(Outcome(connection_id, None, FAILED, error.message))
    connection_type = str(data["spec"]["type"])

    def outcome(status: str, message: str, target: str | None = None) -> T:
        return refused(Outcome(connection_id, connection_type, status, message, target))

    try:
        resolved = _decrypt(root, relpath, data, settings.require_seals, deadline)
    except SopsError as error:
        if error.no_key:
            return outcome(NOT_CHECKED, error.message)
        return outcome(FAILED, f"cannot decrypt: {error.message}")
    except (keys.KeyUnusable, process.DeadlineExceeded):
        raise  # the same for every connection: said once, by the command
    except ConncError as error:
        return outcome(FAILED, error.message)
    if cancel.is_set():  # decrypted after an interrupt: write nothing, send nothing
        return outcome(FAILED, "interrupted")
    workdir.mkdir(mode=0o700)  # no parents: after the run's clean-up this fails, writes nothing
    try:
        return act(resolved, data, workdir, cancel)
    except ProbeFailure as error:
        return outcome(FAILED, str(error), error.target)
    except ConncError as error:
        return outcome(FAILED, error.message)
    except Exception as error:  # noqa: BLE001 - one connection's bug must not hide the others
        # Its text could quote a value: name the kind only, as the CLI does for a crash.
        return outcome(FAILED, f"internal error ({type(error).__name__}); please report it")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _decrypt(root: Path, relpath: str, data: dict[str, Any], require_seal: bool,
             deadline: process.Deadline) -> Resolved:
    """Decrypted, its seal and contract checked: only then may a probe send anything."""
    opening = credentials.Opening(root, relpath, seal.view_of(data), deadline=deadline,
                                  require_seal=require_seal)
    try:
        opened = opening.result()
    finally:
        opening.cancel()
    if opened.problems:
        raise ConncError("; ".join(message for _field, _code, message in opened.problems)
                         + " (run `connc validate --decrypt`)")
    connection_id = data["metadata"]["id"]
    return Resolved(connection_id, data["spec"], {"connection": connection_id}, opened.values)


def _probe(resolved: Resolved, workdir: Path, timeout: float, cancel: process.Cancel,
           id_token_file: Path | None = None) -> Outcome:
    # Each probe's own budget (decryption not counted), stopped with the run.
    deadline = process.Deadline(timeout, cancel=cancel)
    context = Context(workdir, timeout, deadline)
    if id_token_file is not None:
        from connc.identity.ci import TokenFile

        context = dataclasses.replace(context, identity=TokenFile(id_token_file))
    if secretless_spec(resolved.spec) and context.identity is None:
        return Outcome(resolved.id, resolved.type, SKIPPED, secretless.SKIPPED)
    # The limits reach the probes' own requests and the GitHub client's alike.
    with http.limits(deadline=deadline):
        result = PROBES[resolved.type].probe(resolved, context)
    return Outcome(resolved.id, resolved.type, OK if result.ok else FAILED, result.message,
                   result.target)


def _counts(outcomes: list[Outcome]) -> dict[str, int]:
    return {status: sum(o.status == status for o in outcomes)
            for status in (OK, FAILED, NOT_CHECKED, SKIPPED)}


def _text(outcomes: list[Outcome], out: TextIO) -> None:
    id_width = max((len(o.id) for o in outcomes), default=0)
    type_width = max((len(o.type or "?") for o in outcomes), default=0)
    for o in outcomes:
        where = f"{o.target}: " if o.target else ""
        print(f"{o.status:<11}  {o.id:<{id_width}}  {o.type or '?':<{type_width}}  "
              f"{where}{o.message}", file=out)
