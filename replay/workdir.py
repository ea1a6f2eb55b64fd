"""A private working folder (0700) for files that hold captured traffic while a run needs them.

The replay agent keeps the pairs a caller uploads here until their run ends. The folder has a
fixed name per agent (its listen port), so that an agent killed without a chance to clean up
leaves nothing readable for long: the next start on that port empties it, and a normal stop
removes it. A name that exists but is not a real folder of this user (a symlink, another
user's folder in a shared /tmp) is refused rather than followed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from nodetap.errors import HostError


class WorkDir:
    """A 0700 folder; ``path(name)`` for a file in it; ``remove()`` deletes it and its files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def private(cls, name: str | None = None, base: str | None = None) -> WorkDir:
        """A fresh private folder: ``base/name`` emptied of what an earlier process left
        (base: the system's temporary folder), or a new random one without a name."""
        parent = Path(base or tempfile.gettempdir())
        if name is None:
            return cls(Path(tempfile.mkdtemp(prefix="nodetap-replay-", dir=parent)))
        root = parent / name
        _clear(root)
        try:
            root.mkdir(mode=0o700)
        except OSError as e:
            raise HostError(
                f"cannot make the private folder {root}: {e.strerror}; remove what is there"
            ) from None
        os.chmod(root, 0o700)  # whatever the umask
        return cls(root)

    def path(self, name: str) -> str:
        """The path of a file in the folder; create it with ``create`` (0600)."""
        return str(self.root / name)

    def create(self, name: str) -> int:
        """A new file in the folder, 0600, opened for writing (an fd)."""
        return os.open(self.root / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.root)


def _clear(root: Path) -> None:
    """Remove what an earlier process of this user left at root; refuse anything else."""
    try:
        st = root.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise HostError(
            f"{root} exists and is not a folder of this user (a link, a file or another user's "
            "folder); remove it, or give another --work-dir"
        )
    shutil.rmtree(root)
