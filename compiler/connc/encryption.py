"""Keyless checks that a connection file is encrypted the way `.sops.yaml` says it should be.

No pydantic here: `connc render` runs these checks on its start-up path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connc import documents, repository, secrets
from connc.documents import Document
from connc.findings import Finding, dotted, finding, printable
from connc.sops.metadata import SopsMetadata, enc_type, is_encrypted_value, read_metadata
from connc.sops.recipients import KeyGroups, shown_recipient, threshold_after_updatekeys
from connc.sops.rules import CreationRule, RulesError, first_matching_rule, read_rules

EXPECTED_REGEX = "^credential$"


def plaintext_findings(document: Document, relpath: str,
                       skip: frozenset[str] = frozenset()) -> list[Finding]:
    """CONNC403 at each secret-looking value of a parsed file; the message never quotes it.
    `skip`: top-level keys not read (a connection's `credential` and `sops`)."""
    found = []
    for path, label in secrets.scan(document.data, skip):
        line, column = document.position(path)
        found.append(finding(relpath, line, column, "CONNC403",
                             f"`{dotted(path)}` holds {label} in plaintext; secrets belong under "
                             f"`credential` in a connection file, encrypted with sops"))
    return found


def check(document: Document, relpath: str, rules: tuple[CreationRule, ...] | None,
          metadata: SopsMetadata | None = None) -> list[Finding]:
    """The file's encryption against its creation rule. `metadata`: its `sops:` block as
    `read_metadata` reads it, when the caller has it already."""
    data: dict[str, Any] = document.data
    found = _encrypted_outside_credential(document, relpath)
    if "sops" not in data:
        return found + [finding(relpath, 1, 1, "CONNC401",
                                f"the file is not encrypted; run `connc sops encrypt -i {relpath}` "
                                f"from the repository root")]
    found += _credential_values(document, relpath)
    if metadata is None:
        metadata = read_metadata(data["sops"])
    sops_line, sops_column = document.position(("sops",), key=True)
    for problem in metadata.problems:
        found.append(finding(relpath, sops_line, sops_column, "CONNC412", f"sops metadata: {problem}"))
    if rules is None:
        return found
    rule = first_matching_rule(rules, relpath)
    if rule is None:
        return found + [finding(relpath, sops_line, sops_column, "CONNC406",
                                f"no creation rule in .sops.yaml matches `{relpath}`; "
                                f"add one with `path_regex`")]
    drift = _key_drift(metadata, rule, relpath)
    if drift:
        found.append(finding(relpath, sops_line, sops_column, "CONNC405", drift))
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


def _key_drift(metadata: SopsMetadata, rule: CreationRule, relpath: str) -> str | None:
    """What differs between who can decrypt the file and who its rule says should (CONNC405):
    the recipients, and the key groups and threshold that say how many of them must agree.
    A file encrypted to `age: A,B` (either key decrypts) under a rule that now asks for groups
    [A] and [B] with a threshold of 2 is weaker than its rule, with the same recipients."""
    if not metadata.recipients:
        return None  # no recipients at all is CONNC412's
    parts = []
    if metadata.recipients != rule.recipients:
        added = sorted(metadata.recipients - rule.recipients)
        missing = sorted(rule.recipients - metadata.recipients)
        detail = "; ".join(part for part in (
            f"not in .sops.yaml: {', '.join(map(shown_recipient, added))}" if added else "",
            f"missing from the file: {', '.join(map(shown_recipient, missing))}"
            if missing else "",
        ) if part)
        parts.append(f"recipients differ from .sops.yaml rule {rule.index + 1} ({detail})")
    ours, theirs = metadata.key_groups, rule.key_groups
    # With one group on each side the recipients say it all; otherwise compare the structure.
    if ours.canonical() != theirs.canonical() and not len(ours.groups) == len(theirs.groups) == 1:
        subject = ("key groups differ too" if parts
                   else f"key groups differ from .sops.yaml rule {rule.index + 1}")
        parts.append(f"{subject}: the file has {_shown_groups(ours)}, the rule asks for "
                     f"{_shown_groups(theirs)}")
    if not parts:
        return None
    # updatekeys compares groups position by position and rewrites them when any differs, but
    # keeps the file's own threshold; a fresh encryption takes both from the rule.
    rewrites_groups = [set(g) for g in ours.groups] != [set(g) for g in theirs.groups]
    if rewrites_groups and threshold_after_updatekeys(ours, theirs) == theirs.threshold:
        fix = f"run `connc sops updatekeys {relpath}`"
    else:
        fix = (f"`sops updatekeys` keeps a file's threshold, so decrypt and re-encrypt it: "
               f"`connc sops decrypt -i {relpath} && connc sops encrypt -i {relpath}`")
    return f"{'; '.join(parts)}; {fix}"


def _shown_groups(key_groups: KeyGroups) -> str:
    groups = sorted(sorted(map(shown_recipient, group)) for group in key_groups.groups)
    listed = " ".join(f"[{', '.join(group)}]" for group in groups)
    if len(groups) == 1:
        return f"one key group {listed} (any one of its keys decrypts)"
    return f"{len(groups)} key groups {listed}, {key_groups.threshold} of them needed to decrypt"


def check_rules(rules: list[CreationRule], relpath: str = ".sops.yaml") -> list[Finding]:
    """Rules that cover connection files must encrypt `credential` only and MAC only it, and
    name key groups sops can encrypt with."""
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
            continue
        found += [finding(relpath, rule.line, 1, "CONNC014", message)
                  for message in _unusable_groups(rule)]
    return found


def _unusable_groups(rule: CreationRule) -> list[str]:
    """Key groups sops cannot encrypt with: it refuses an empty group ("empty key group
    provided") and splits the data key only for 2 <= threshold <= groups (shamir.Split)."""
    groups = rule.key_groups.groups
    if len(groups) <= 1:
        return []  # one group: no split, the threshold is not used
    messages = [f"creation rule {rule.index + 1}: key group {number} names no recipients, and "
                f"sops cannot encrypt to an empty group"
                for number, group in enumerate(groups, 1) if not group]
    threshold = rule.key_groups.threshold
    if not 2 <= threshold <= len(groups):
        messages.append(f"creation rule {rule.index + 1}: shamir_threshold {threshold} with "
                        f"{len(groups)} key groups; sops needs 2 to {len(groups)} to split "
                        f"the data key")
    return messages


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
    connection_id = repository.stem(relpath, repository.CONNECTION_SUFFIX)
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
                                 f"with `connc secret set {connection_id} {key}` (and rotate it: "
                                 f"it was exposed)"))
        elif enc_type(value) != "str":
            found.append(finding(relpath, line, column, "CONNC411",
                                 f"`{dotted(path)}` is encrypted as type "
                                 f"{enc_type(value) or 'unknown'}; credential values are strings "
                                 f"(quote the value before encrypting)"))
    return found


def load_rules(root: Path, *, report: bool = True, files: repository.Files = repository.DISK
               ) -> tuple[list[CreationRule] | None, list[Finding]]:
    """The creation rules of `.sops.yaml`, and its findings. `report=False` (render, which
    leaves them to validate) skips what only finds: the secret scan, the rules' own checks."""
    relpath = repository.SOPS_CONFIG
    if not repository.present(root / relpath, files):
        return None, [finding(relpath, 1, 1, "CONNC014",
                              ".sops.yaml is missing; connc checks every file's recipients "
                              "against its creation rules")]
    document, found = documents.read(root, relpath, None, files=files)
    if document is None:
        return None, found
    # A private key pasted where its public key belongs is a leak the moment it is pushed.
    if report:
        found += plaintext_findings(document, relpath)
    try:
        rules = read_rules(document.data, lambda path: document.position(path)[0])
    except RulesError as error:
        # The message quotes RE2's reason, which quotes the pattern: no control characters.
        return None, found + [finding(relpath, error.line, 1, "CONNC014",
                                      printable(error.message))]
    return rules, (found + check_rules(rules)) if report else found
