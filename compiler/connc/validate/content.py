"""`validate --decrypt`: decrypt each connection and check what the credential holds.

The same decrypt path and field contract as render and check (`credentials.Openings`: a few
sops processes at a time, one deadline for them all). Only files the acceptance predicate
accepts are decrypted: a file validate already refuses starts no process. Messages name
fields, never values.
"""

from __future__ import annotations

from pathlib import Path

from connc import documents, process, seal
from connc.credentials import Opened, Openings
from connc.errors import SopsError, UsageError
from connc.findings import Finding, finding
from connc.repository import ConnectionSummary
from connc.sops import binary, keys

# Seconds for every decryption of the run together (`--timeout`): at 10,000 connections a
# 2-CPU runner decrypts them in two to four minutes.
DEFAULT_TIMEOUT = 600.0


def check_contents(root: Path, connections: list[ConnectionSummary], require_seals: bool,
                   deadline: process.Deadline) -> list[Finding]:
    """`connections`: the files to decrypt (those the predicate accepts)."""
    binary.executable()  # a missing binary is an environment error (exit 2), raised before any work
    found: list[Finding] = []
    keyless: list[keys.NotARecipient] = []  # files no key here decrypts
    with Openings(root, [(summary.relpath, seal.view_of_summary(summary))
                         for summary in connections],
                  deadline=deadline, require_seal=require_seals) as openings:
        for summary, opening in zip(connections, openings, strict=True):
            try:
                found += _check_one(root, summary, opening.result())
            except SopsError as error:
                if isinstance(error, keys.NotARecipient):
                    keyless.append(error)
                found.append(finding(summary.relpath, *summary.sops_pos, "CONNC601",
                                     f"cannot decrypt: {error.message}"))
    if connections and len(keyless) == len(connections):
        # Not one file decrypts: the environment has no key, which is no finding of the files.
        raise UsageError(f"--decrypt: {keys.summary(keyless)}")
    return found


def _check_one(root: Path, summary: ConnectionSummary, opened: Opened) -> list[Finding]:
    # A credential that is not a mapping is reported keyless (CONNC102); its field is "".
    # A missing seal is reported keyless too (CONNC413).
    problems = [problem for problem in opened.problems
                if problem[0] and problem[1] != "CONNC413"]
    found = []
    if opened.wider_seal:
        found.append(finding(summary.relpath, *summary.credential_pos, "CONNC610",
                             f"the seal of `{summary.id}` is wider than the file "
                             f"({', '.join(opened.wider_seal)} narrowed since it was sealed): "
                             f"until it is renewed, anyone can widen the file back and render "
                             f"accepts it; a key holder makes the narrowing durable with "
                             f"`connc seal {summary.id}`"))
    if not problems:
        return found
    # Positions come from the encrypted file: the keys are the same, and it is plaintext.
    encrypted, _ = documents.read(root, summary.relpath, "Connection", listed=True)
    for field, code, message in problems:
        line, column = encrypted.position(("credential", field)) if encrypted else (1, 1)
        found.append(finding(summary.relpath, line, column, code, message))
    return found
