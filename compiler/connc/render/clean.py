"""`connc clean OUT`: revoke a bundle's GitHub tokens, then remove it file by file.

Render uses the same steps on its way (`sweep`: what a killed render of OUT left beside it;
`discard`: the previous bundle it replaced), so no bundle it drops keeps a live token.

`clean` deletes only a directory `bundle.inspect` accepts (exactly a bundle's layout and
modes), and only the files its manifest lists; it never follows a symlink; and it refuses,
before anything is revoked, the places a mistyped or empty argument could name: the working
directory and its ancestors, a git repository, the work tree of the working directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from connc.errors import RenderError, UsageError
from connc.render import bundle, github_tokens
from connc.render.bundle import Listing, NotABundle


def clean(out: Path | str) -> Iterator[str]:
    if isinstance(out, str) and not out:
        raise UsageError("connc clean needs the bundle's path; an empty one would name the "
                         "working directory")
    path = _refuse_places(Path(out))
    if os.path.islink(path):
        # Refused before anything is revoked: deleting through a link would delete what it
        # points to, and the link stays the user's to remove.
        raise RenderError(f"{path} is a symlink; give the bundle's own path")
    listing: Listing | None = None
    try:
        listing = bundle.inspect(path)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except NotABundle as why:
        raise RenderError(f"{path} is not a connc bundle ({why.message}); not removing "
                          f"it") from None
    except OSError as error:
        raise RenderError(f"cannot read {path}: {error.strerror}") from None
    swept = False
    for message in sweep(path, quick=False):
        swept = True
        yield message
    if listing is None:
        if not swept:
            yield f"connc: {path} does not exist; nothing to clean"
        bundle.remove_private_parent(path)
        return
    yield from github_tokens.revoke_states(path, listing.token_states, quick=False)
    try:
        bundle.delete(path, listing)
    except OSError as error:
        raise RenderError(f"cannot remove {path}: {error.strerror}") from None
    bundle.remove_private_parent(path)
    yield f"connc: removed {path}"


def _refuse_places(path: Path) -> Path:
    """`path` made absolute (not resolved: a symlink stays one), unless it names a place no
    bundle ever is. An empty argument is `Path("")`, the working directory."""
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the working directory was removed: `.` names nothing to clean
        raise RenderError("the working directory no longer exists; give an absolute path "
                          "to clean") from None
    absolute = cwd / path
    resolved = absolute.resolve()
    shown = f"`{path}`"
    if resolved == cwd:
        raise RenderError(f"refusing to clean {shown}: it is the working directory (so is an "
                          f"empty path)")
    if cwd.is_relative_to(resolved):
        raise RenderError(f"refusing to clean {shown}: it holds the working directory")
    if os.path.lexists(resolved / ".git"):
        raise RenderError(f"refusing to clean {shown}: it is a git repository")
    for directory in (cwd, *cwd.parents):
        if os.path.lexists(directory / ".git"):
            if resolved.is_relative_to(directory):
                raise RenderError(f"refusing to clean {shown}: it is inside the repository "
                                  f"{directory}, where render never puts a bundle")
            break
    return absolute


def sweep(out: Path, *, quick: bool) -> Iterator[str]:
    """Revoke and remove what killed renders of `out` left beside it (staging directories,
    previous bundles mid-way through being replaced), skipping one a running render holds
    and leaving, with a warning, anything not exactly what a render leaves."""
    for path in bundle.leftovers(out):
        yield from _dispose(path, quick=quick, what="left by a render that did not finish")


def discard(previous: Path, *, quick: bool) -> Iterator[str]:
    """Revoke and remove the previous bundle a render just replaced."""
    yield from _dispose(previous, quick=quick, what="the bundle replaced")


def _dispose(path: Path, *, quick: bool, what: str) -> Iterator[str]:
    try:
        lock = bundle.claim(path)
    except NotABundle as why:
        yield f"connc: warning: left {path}: {why.message}"
        return
    except OSError:
        return  # gone already (another render or clean got there first)
    if lock is None:
        return  # a running render is writing it
    try:
        listing = bundle.inspect(path, leftover=True)
        yield from github_tokens.revoke_states(path, listing.token_states, quick=quick)
        bundle.delete(path, listing)
    except NotABundle as why:
        yield (f"connc: warning: left {path}: it is named as render names its own, but "
               f"{why.message}")
        return
    except OSError as error:
        yield f"connc: warning: could not remove {path}: {error.strerror}"
        return
    finally:
        os.close(lock)
    yield f"connc: removed {path} ({what})"


def tell(messages: Iterable[str]) -> None:
    """Render's way to show these messages: stderr (stdout may be the env file)."""
    import sys

    for message in messages:
        print(message, file=sys.stderr)
