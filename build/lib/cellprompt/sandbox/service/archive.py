"""The workspace as a tar archive, so the host never walks a folder agent code controls.

Built inside the sandbox, where following a link can only reach what the
sandbox can see anyway: symlinks go in as symlinks (never followed), special
files as what they are (their content is never read), regular files until the
size budget is spent. The host extracts the archive with its own safety filter.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path


def workspace_tar(root: Path, max_bytes: int) -> tuple[bytes, list[str]]:
    """The archive of `root` (at most about `max_bytes` of file content) and what was left out."""
    buf = io.BytesIO()
    skipped: list[str] = []
    spent = 0
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for folder, dirs, files in os.walk(root):  # os.walk never descends into a symlink
            dirs.sort()
            for name in [*dirs, *sorted(files)]:
                path = Path(folder) / name
                rel = str(path.relative_to(root))
                try:
                    st = path.lstat()
                    if stat.S_ISREG(st.st_mode):
                        if spent + st.st_size > max_bytes:
                            skipped.append(f"{rel} ({st.st_size} bytes: over the copy cap)")
                            continue
                        spent += st.st_size
                    elif not (stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                        skipped.append(f"{rel} (not a file, folder or symlink)")
                        continue
                    info = tar.gettarinfo(str(path), arcname=rel)
                    if info.isreg():  # read first: a file that changes cannot corrupt the tar
                        with open(path, "rb", opener=_nofollow) as fh:
                            data = fh.read(max(0, max_bytes - spent + st.st_size))
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
                    else:
                        tar.addfile(info)
                except (OSError, tarfile.TarError) as exc:  # changed under us: leave it out
                    skipped.append(f"{rel} ({type(exc).__name__})")
    return buf.getvalue(), skipped


def _nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)
