"""The parts of `--reach` that need no service: its registry, bounds and redaction."""

from __future__ import annotations

from connc.check import reach_run, run
from connc.check.reach import Item, Listed, Reach, name, redacted, url_prefix, within
from connc.schema import connection_types


def test_every_connection_type_is_probed_and_reached() -> None:
    assert set(run.PROBES) == set(connection_types.NAMES)
    assert set(reach_run.REACHERS) == set(connection_types.NAMES)


def test_what_is_left_off_is_counted_or_said_to_go_on() -> None:
    assert Listed(("a", "b")).rest() == ""
    assert Listed(("a", "b"), total=7, complete=False).rest() == "and 5 more"
    assert Listed(("a", "b"), complete=False).rest() == "and more (the service does not count them)"


def test_url_prefix_is_the_use_of_a_git_host_connection() -> None:
    assert url_prefix("https://gitlab.example.com/Acme/") == "acme"
    assert url_prefix("https://gitlab.example.com/acme/api.git") == "acme/api"
    assert url_prefix("https://gitlab.example.com") == ""
    assert within("acme/api", "acme") and within("ACME/api", "acme")
    assert not within("acme-evil/api", "acme")
    assert within("anything/at/all", "")


def test_redaction_reaches_every_string_and_each_line_of_a_key() -> None:
    key = "-----BEGIN KEY-----\nQUJDREVGR0hJSktMTU5PUA==\n-----END KEY-----"
    found = Reach("https://h/x", "as tok-12345678", "repositories",
                  items=(Item("org/tok-12345678", "QUJDREVGR0hJSktMTU5PUA==",
                              branches=Listed(("main", "xtok-12345678x"))),),
                  warnings=("w tok-12345678",))
    shown = redacted(found, {"tok-12345678", key, "ab"})
    assert shown.summary == "as [redacted]"
    assert shown.items[0].name == "org/[redacted]"
    assert shown.items[0].default_branch == "[redacted]"
    assert shown.items[0].branches == Listed(("main", "x[redacted]x"))
    assert shown.warnings == ("w [redacted]",)
    # A value under four characters is not replaced: every "ab" in the output would be.
    assert redacted(Reach("t", "cab", "k"), {"ab"}).summary == "cab"


def test_a_secret_with_a_secret_looking_part_is_found_as_names_show_it() -> None:
    # A service's names are made printable as they come in, which names a token-shaped part
    # by its kind: the rest of the secret around it must not stay in clear.
    secret = "pw-" + "AKIA" + "IOSFODNN7EXAMPLE" + "-tail"
    echoed = Item(name(f"org/{secret}") or "")
    assert echoed.name == "org/pw-[an AWS access key]-tail"
    shown = redacted(Reach("t", "s", "k", items=(echoed,)), {secret})
    assert shown.items[0].name == "org/[redacted]"
