"""Who a file is encrypted to: recipients as sops records them, and who must cooperate.

Recipients are compared as sops writes them (`age:<key>`, `pgp:<fingerprint>`, `kms:<arn>`,
...), so moving from age keys to a cloud KMS needs no change in connc. Who can decrypt is more
than a set of recipients: sops splits the data key between key groups (Shamir), any key of a
group opens that group's share, and `shamir_threshold` shares are needed. `KeyGroups` is that
structure; `metadata` reads it from a file as sops reads it (stores/stores.go), `rules` from a
creation rule as sops builds it (config/config.go).
"""

from __future__ import annotations

import dataclasses
import re

from connc.findings import printable
from connc.secrets import what_secret

# sops metadata key -> (recipient kind, fields that identify the key)
KEY_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "age": ("age", ("recipient",)),
    "pgp": ("pgp", ("fp",)),
    "kms": ("kms", ("arn",)),
    "gcp_kms": ("gcp_kms", ("resource_id",)),
    "azure_kv": ("azure_kv", ("vault_url", "name", "version")),
    "hc_vault": ("hc_vault", ("vault_address", "engine_path", "key_name")),
}


@dataclasses.dataclass(frozen=True)
class KeyGroups:
    """Who must cooperate to decrypt: the key groups, each a set of recipients, and the threshold.

    Semantics followed (getsops/sops): with one group there is no Shamir split and any one key
    decrypts (sops.go, UpdateMasterKeysWithKeyServices / GetDataKeyWithKeyServices: "If there's
    only one key group, we can't do Shamir"); with several, `shamir_threshold` groups are needed
    and 0 (absent) means all of them ("if m.ShamirThreshold == 0 { m.ShamirThreshold =
    len(m.KeyGroups) }"; getsops.io docs, Key groups: "By default, the threshold is set to the
    number of key groups"). sops records the rule's shamir_threshold even in a one-group file,
    where it means nothing, so it is compared only through `threshold`.
    """

    groups: tuple[frozenset[str], ...]
    recorded_threshold: int = 0  # shamir_threshold as written; 0 when absent

    @property
    def threshold(self) -> int:
        """Groups needed to decrypt."""
        return effective_threshold(len(self.groups), self.recorded_threshold)

    def canonical(self) -> tuple[tuple[tuple[str, ...], ...], int]:
        """The structure, order-free: two files alike here are opened by the same key sets.

        The order of groups changes nothing about who can decrypt (any `threshold` of them),
        so it is not compared; a group listed twice still counts twice."""
        return tuple(sorted(tuple(sorted(g)) for g in self.groups)), self.threshold


NO_KEY_GROUPS = KeyGroups(())


def effective_threshold(groups: int, recorded: int) -> int:
    if groups <= 1:
        return 1
    return recorded or groups


def threshold_after_updatekeys(file: KeyGroups, rule: KeyGroups) -> int:
    """The threshold `sops updatekeys` gives a file: it takes the rule's groups but keeps the
    file's own shamir_threshold, capped at the new number of groups (cmd/sops/subcommand/
    updatekeys/updatekeys.go: `shamirThreshold = min(tree.Metadata.ShamirThreshold,
    len(conf.KeyGroups))`, with a TODO about using the rule's instead); 0 then becomes every
    group. Checked against sops 3.11: a threshold-only change leaves updatekeys "already up to
    date"."""
    count = len(rule.groups)
    return effective_threshold(count, min(file.recorded_threshold, count))


def is_threshold(value: object) -> bool:
    """A `shamir_threshold` sops' YAML decoder takes: a whole number."""
    return isinstance(value, int) and not isinstance(value, bool)


def recipient_id(kind: str, value: str) -> str:
    if kind == "pgp":
        value = value.replace(" ", "").upper()
    return f"{kind}:{value.strip()}"


def shown_recipient(recipient: str) -> str:
    """A recipient as a message prints it: a private key pasted by mistake is named, not shown,
    and a control character (a newline that would forge a line of a CI log, an escape
    sequence) that a file's `sops` block can hold is replaced."""
    label = what_secret(None, recipient)
    return f"({label}, not shown)" if label else printable(recipient)


def recipient_of_member_key(value: str) -> str:
    """A recipient as written in members.yaml / connc.yaml, in `recipient_id` form.

    `age1...` is an age key; `arn:aws:kms:` a KMS key; `projects/.../cryptoKeys/...` a GCP key;
    `https://...vault.azure.net/keys/NAME/VERSION` Azure; other `http(s)://` a Vault transit
    URI; a 40-hex string a PGP fingerprint. `kind:value` is taken as is.
    """
    value = value.strip()
    if value.startswith("age1"):
        return recipient_id("age", value)
    if value.startswith("arn:aws:kms:"):
        return recipient_id("kms", value)
    if value.startswith("projects/") and "/cryptoKeys/" in value:
        return recipient_id("gcp_kms", value)
    azure = re.match(r"^(https://[^/]+\.vault\.azure\.net)/keys/([^/]+)/([^/]+)$", value)
    if azure:
        return recipient_id("azure_kv", "/".join(azure.groups()))
    vault = re.match(r"^(https?://[^/]+)/v1/(.+)/keys/([^/]+)$", value)
    if vault:
        return recipient_id("hc_vault", "/".join(vault.groups()))
    if re.fullmatch(r"[0-9A-Fa-f ]{40,49}", value):
        return recipient_id("pgp", value)
    if re.match(r"^[a-z_]+:", value):
        kind, _, rest = value.partition(":")
        if kind in {k for k, _f in KEY_SOURCES.values()}:
            return recipient_id(kind, rest)
    return recipient_id("unknown", value)
