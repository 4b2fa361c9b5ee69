"""`validate --decrypt`: decrypt each connection and check what the credential holds.

Values are `Secret`s from the moment sops returns them; messages name fields, never values.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from connc import sops
from connc.credentials import credential_problems
from connc.documents import read_document
from connc.errors import SopsError
from connc.filecheck import ConnectionSummary
from connc.findings import Finding, finding


def check_contents(root: Path, connections: list[ConnectionSummary]) -> list[Finding]:
    sops.binary()  # a missing binary is an environment error (exit 2), raised before any work
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = pool.map(lambda summary: _check_one(root, summary), connections)
        return [f for found in results for f in found]


def _check_one(root: Path, summary: ConnectionSummary) -> list[Finding]:
    try:
        document = sops.decrypt(root, summary.relpath)
    except SopsError as error:
        return [finding(summary.relpath, *summary.sops_pos, "CONNC601",
                        f"cannot decrypt: {error.message}")]
    credential = document.get("credential")
    if not isinstance(credential, dict):
        return []
    problems = credential_problems(summary.type, credential)
    if not problems:
        return []
    # Positions come from the encrypted file: the keys are the same, and it is plaintext.
    encrypted, _ = read_document(root, summary.relpath)
    found = []
    for field, code, message in problems:
        line, column = encrypted.position(("credential", field)) if encrypted else (1, 1)
        found.append(finding(summary.relpath, line, column, code, message))
    return found

