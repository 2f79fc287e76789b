"""Reading prompt files out of a git repository at a ref, with the `git` command (no Django).

Files come from the commit itself, never from the working tree, so that what a version records
as its commit is exactly what was imported.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

PROMPT_FILE_SUFFIXES = (".yaml", ".yml")
MAX_FILES = 10_000


class GitError(Exception):
    """The repository, the ref or a file could not be read."""


@dataclass(frozen=True)
class GitSnapshot:
    """The prompt files under a folder of a repository at one commit."""

    commit: str  # full hexadecimal id
    tag: str | None  # a tag pointing at the commit, if any
    subject: str  # the commit message's first line
    files: tuple[tuple[str, bytes], ...]  # (path relative to the repository, content)


def _git(folder: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise GitError(f"git {args[0]} failed: {error}") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(message[-1] if message else f"git {args[0]} exited with {done.returncode}")
    return done.stdout


def read_snapshot(path: str | Path, ref: str = "HEAD") -> GitSnapshot:
    """The prompt files (``*.yaml``, ``*.yml``) under ``path`` — a repository or a folder in one
    — as they are at ``ref`` (a branch, tag or commit)."""
    folder = Path(path)
    if not folder.is_dir():
        raise GitError(f"{folder} is not a folder")
    if ref.startswith("-"):
        raise GitError(f"{ref!r} is not a ref")
    _git(folder, "rev-parse", "--git-dir")  # fails with git's own words outside a repository
    try:
        commit = _git(folder, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").decode().strip()
    except GitError:
        raise GitError(f"{ref!r} is not a commit, branch or tag of the repository at {folder}") from None
    tags = _git(folder, "tag", "--points-at", commit).decode().split()
    subject = _git(folder, "log", "-1", "--format=%s", commit).decode().strip()
    # Run in the folder, ls-tree lists the files under it, named from the repository's top.
    listing = _git(folder, "ls-tree", "-r", "-z", "--full-name", "--name-only", commit)
    names = sorted(n for n in listing.decode().split("\0") if n.endswith(PROMPT_FILE_SUFFIXES))
    if len(names) > MAX_FILES:
        raise GitError(f"more than {MAX_FILES:,} prompt files under {folder}")
    files = tuple((name, _git(folder, "cat-file", "blob", f"{commit}:{name}")) for name in names)
    return GitSnapshot(commit=commit, tag=tags[0] if tags else None, subject=subject, files=files)
