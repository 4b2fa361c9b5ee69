"""Where this connc was installed from, as a requirement a CI job can `pip install`.

The workflows `connc init` writes install connc in each job; the version that wrote them is
the one they should install, from where it came. The installed distribution records that
(PEP 610, `direct_url.json`): a VCS URL and the commit it was at, an archive URL (with its
hash), or a local directory; no record means a package index, where `connc==VERSION` finds it.
A local path (a directory, a wheel file, a repository on this disk) is no source a CI runner
can reach: then the requirement is only a guess, and `Source.problem` says so and why.
"""

from __future__ import annotations

import dataclasses
import json
import re
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DISTRIBUTION = "connc"
# A pip requirement as a workflow may carry it: a name with a version, or `name @ URL`. It
# reaches `pip install` through an environment variable, never the script, and no character
# here can end the YAML string it is written into.
REQUIREMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+\-=<>!~,:/@#\[\] ]*(?<! )")
_COMMIT = re.compile(r"[0-9a-f]{7,64}")  # what pip records: the full SHA-1 or SHA-256


@dataclasses.dataclass(frozen=True)
class Source:
    requirement: str
    origin: str  # as a message says it: "the package index", "git+https://... at 3f2a..."
    problem: str | None = None  # why a CI job may not install it


def source() -> Source:
    """This connc's source, read from its installed metadata."""
    try:
        distribution = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return Source(f"{DISTRIBUTION}=={_version()}", "unknown",
                      "connc runs from a source tree, not an installation")
    index = Source(f"{DISTRIBUTION}=={distribution.version}", "a package index")
    raw = distribution.read_text("direct_url.json")
    if raw is None:
        return index
    try:
        recorded = json.loads(raw)
        return _from_direct_url(recorded, index)
    except (ValueError, KeyError, TypeError, AttributeError):
        return dataclasses.replace(index, origin="unknown",
                                   problem="its installation record (direct_url.json) is unreadable")


def _version() -> str:
    from connc import __version__

    return __version__


def _from_direct_url(recorded: dict[str, Any], index: Source) -> Source:
    url = str(recorded["url"])
    parts = urlsplit(url)
    local = parts.scheme == "file"
    if parts.username or parts.password:
        # pip removes credentials from what it records, but a URL may still carry a user or
        # an ${ENV} placeholder: neither belongs in a workflow file, where everyone reads it.
        url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    subdirectory = recorded.get("subdirectory")
    fragment = f"#subdirectory={subdirectory}" if isinstance(subdirectory, str) else ""
    if "vcs_info" in recorded:
        vcs = recorded["vcs_info"]
        if not _COMMIT.fullmatch(str(vcs["commit_id"])):
            raise ValueError("a commit that is no commit id")  # the record is unreadable
        where = f"{vcs['vcs']}+{url}@{vcs['commit_id']}"
        found = Source(f"{DISTRIBUTION} @ {where}{fragment}", where)
        if local:
            found = dataclasses.replace(found, problem=f"the repository {parts.path} is on this "
                                                       f"machine, where CI cannot clone it")
        elif parts.scheme not in ("https", "http"):
            # ssh (git@host:...): a CI runner has no key to clone with, and the user part
            # (`git@`) is gone with the credentials.
            found = dataclasses.replace(found, problem=f"it was cloned over {parts.scheme}, "
                                                       f"which a CI runner has no key for")
    elif "archive_info" in recorded:
        hashes = recorded["archive_info"].get("hashes") or {}
        digest = f"#sha256={hashes['sha256']}" if "sha256" in hashes else ""
        found = Source(f"{DISTRIBUTION} @ {url}{digest or fragment}", url)
        if local:
            found = dataclasses.replace(found, problem=f"the file {parts.path} is on this "
                                                       f"machine, where CI cannot read it")
    elif "dir_info" in recorded:
        return dataclasses.replace(index, origin=f"the directory {parts.path}",
                                   problem=f"it was installed from the directory {parts.path}, "
                                           f"which CI cannot install from")
    else:
        raise KeyError("no vcs_info, archive_info or dir_info")
    if not REQUIREMENT.fullmatch(found.requirement):
        return dataclasses.replace(index, origin="unknown",
                                   problem=f"its source {found.origin} is not a requirement a "
                                           f"workflow can carry")
    return found
