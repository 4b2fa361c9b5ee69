"""Keyless checks that a connection file is encrypted the way `.sops.yaml` says it should be.

No pydantic here: `connc render` runs these checks on its start-up path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connc import documents, repository, secrets
from connc.documents import Document
from connc.findings import Finding, dotted, finding
from connc.sopsmeta import (
    CreationRule,
    RulesError,
    enc_type,
    first_matching_rule,
    is_encrypted_value,
    read_metadata,
    read_rules,
    shown_recipient,
)

EXPECTED_REGEX = "^credential$"


def check(document: Document, relpath: str,
          rules: tuple[CreationRule, ...] | None) -> list[Finding]:
    data: dict[str, Any] = document.data
    found = _encrypted_outside_credential(document, relpath)
    if "sops" not in data:
        return found + [finding(relpath, 1, 1, "CONNC401",
                                f"the file is not encrypted; run `sops encrypt -i {relpath}` "
                                f"from the repository root")]
    found += _credential_values(document, relpath)
    metadata = read_metadata(data["sops"])
    sops_line, sops_column = document.position(("sops",), key=True)
    for problem in metadata.problems:
        found.append(finding(relpath, sops_line, sops_column, "CONNC412", f"sops metadata: {problem}"))
    if rules is None:
        return found
    rule = first_matching_rule(list(rules), relpath)
    if rule is None:
        return found + [finding(relpath, sops_line, sops_column, "CONNC406",
                                f"no creation rule in .sops.yaml matches `{relpath}`; "
                                f"add one with `path_regex`")]
    if metadata.recipients and metadata.recipients != rule.recipients:
        added = sorted(metadata.recipients - rule.recipients)
        missing = sorted(rule.recipients - metadata.recipients)
        detail = "; ".join(part for part in (
            f"not in .sops.yaml: {', '.join(map(shown_recipient, added))}" if added else "",
            f"missing from the file: {', '.join(map(shown_recipient, missing))}"
            if missing else "",
        ) if part)
        found.append(finding(relpath, sops_line, sops_column, "CONNC405",
                             f"recipients differ from .sops.yaml rule {rule.index + 1} ({detail}); "
                             f"run `sops updatekeys {relpath}`"))
    settings = []
    if metadata.encrypted_regex != rule.encrypted_regex:
        settings.append(f"encrypted_regex is {metadata.encrypted_regex!r} in the file and "
                        f"{rule.encrypted_regex!r} in the rule")
    if metadata.mac_only_encrypted != rule.mac_only_encrypted:
        settings.append(f"mac_only_encrypted is {str(metadata.mac_only_encrypted).lower()} in the "
                        f"file and {str(rule.mac_only_encrypted).lower()} in the rule")
    if settings:
        found.append(finding(relpath, sops_line, sops_column, "CONNC407",
                             f"{'; '.join(settings)}; decrypt and re-encrypt the file with sops"))
    return found


def check_rules(rules: list[CreationRule], relpath: str = ".sops.yaml") -> list[Finding]:
    """Rules that cover connection files must encrypt `credential` only and MAC only it."""
    found = []
    for rule in rules:
        if not rule.matches("connections.d/example.sops.yaml"):
            continue
        if rule.encrypted_regex != EXPECTED_REGEX or not rule.mac_only_encrypted:
            found.append(finding(relpath, rule.line, 1, "CONNC407",
                                 f"creation rule {rule.index + 1} covers connections.d/ and must set "
                                 f"`encrypted_regex: {EXPECTED_REGEX}` and "
                                 f"`mac_only_encrypted: true`, so reviewers can read and change "
                                 f"everything but the secrets"))
        if not rule.recipients:
            found.append(finding(relpath, rule.line, 1, "CONNC014",
                                 f"creation rule {rule.index + 1} names no recipients"))
    return found


def _encrypted_outside_credential(document: Document, relpath: str) -> list[Finding]:
    found = []

    def walk(value: Any, path: tuple[str | int, ...]) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if path or key not in ("credential", "sops"):
                    walk(item, path + (key,))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, path + (index,))
        elif is_encrypted_value(value):
            line, column = document.position(path)
            found.append(finding(relpath, line, column, "CONNC404",
                                 f"`{dotted(path)}` is encrypted, but only `credential` may be "
                                 f"(reviewers must read scope, owner and endpoint); set "
                                 f"`encrypted_regex: {EXPECTED_REGEX}` in .sops.yaml and re-encrypt"))

    walk(document.data, ())
    return found


def _credential_values(document: Document, relpath: str) -> list[Finding]:
    credential = document.data.get("credential")
    if not isinstance(credential, dict):
        return []
    found = []
    for key, value in credential.items():
        path = ("credential", key)
        line, column = document.position(path)
        if not isinstance(value, str):
            found.append(finding(relpath, line, column, "CONNC102",
                                 f"`{dotted(path)}` must be a string"))
        elif value == "":
            # sops leaves an empty string as it is (nothing to encrypt): no leak, no credential.
            # Same finding as the --decrypt check, so a run with both reports it once.
            found.append(finding(relpath, line, column, "CONNC602", f"`{dotted(path)}` is empty"))
        elif not is_encrypted_value(value):
            found.append(finding(relpath, line, column, "CONNC402",
                                 f"`{dotted(path)}` is plaintext in an encrypted file; encrypt it "
                                 f"with `connc secret set ID {key}` (and rotate it: it was exposed)"))
        elif enc_type(value) != "str":
            found.append(finding(relpath, line, column, "CONNC411",
                                 f"`{dotted(path)}` is encrypted as type "
                                 f"{enc_type(value) or 'unknown'}; credential values are strings "
                                 f"(quote the value before encrypting)"))
    return found


def load_rules(root: Path) -> tuple[list[CreationRule] | None, list[Finding]]:
    relpath = repository.SOPS_CONFIG
    if not repository.present(root / relpath):
        return None, [finding(relpath, 1, 1, "CONNC014",
                              ".sops.yaml is missing; connc checks every file's recipients "
                              "against its creation rules")]
    document, found = documents.read(root, relpath, None)
    if document is None:
        return None, found
    # A private key pasted where its public key belongs is a leak the moment it is pushed.
    found += secrets.plaintext_findings(document, relpath)
    try:
        rules = read_rules(document.data, lambda path: document.position(path)[0])
    except RulesError as error:
        return None, found + [finding(relpath, error.line, 1, "CONNC014", error.message)]
    return rules, found + check_rules(rules)
