"""Reading a photo file and walking a folder of them, safely: a file is checked before it is opened (no FIFO,
device, socket, broken or looping link, folder), and read only up to a byte limit; a folder is walked
iteratively, hidden entries left out, and each folder that cannot be listed reported. Torch-free."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from hypoderm.imaging.formats import _CONTAINERS, ImageLoadError, _looks_like_image, _sniff

# Largest file `load_rgb` reads: above an uncompressed 64 MP RGB TIFF (192 MB), far above any phone photo
# (2-10 MB). A bigger file is refused without being read (a 3 GiB video once cost predict 3.2 GB).
MAX_FILE_BYTES: int = 256 * 1024 * 1024


def read_image_file(path: str | os.PathLike[str], max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a file, checked before they are read: a missing path, a broken or looping symbolic link,
    a folder, a named pipe (FIFO), a device or a socket is refused without being opened (reading a FIFO blocks
    forever, /dev/zero never ends); a file over `max_bytes` is refused without being read (a video in the
    photo folder: "not an image file (MP4/MOV video)" when its first bytes say so, else "file too large")."""
    p = Path(path)
    _check_regular(p, _stat(p))
    try:
        # O_NONBLOCK: should the path have become a FIFO since the check, opening it must not block
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise _os_error(e) from e
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        _check_regular(p, info)  # the file opened is the one checked
        try:
            head = f.read(1024)
            if info.st_size > max_bytes:
                kind = None if _looks_like_image(head) else _sniff(head)
                if kind in _CONTAINERS:
                    raise ImageLoadError(f"not an image file ({kind})", "not_image")
                raise ImageLoadError(f"file too large: {info.st_size} bytes > limit {max_bytes} bytes", "too_large")
            data = head + f.read(max_bytes + 1 - len(head))  # never past the limit, even if the file grows
        except OSError as e:
            raise _os_error(e) from e
    if len(data) > max_bytes:
        raise ImageLoadError(f"file too large: more than the limit of {max_bytes} bytes", "too_large")
    return data


def walk_folder(root: str | os.PathLike[str]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Every entry below `root` that is not a folder (a symbolic link to a folder included: reported, not followed),
    sorted, leaving out hidden entries (a name starting with '.') and all inside hidden folders; and each folder
    (`root` included) that could not be listed, with the reason, so that a caller reports it like an unreadable file
    instead of skipping its photos without a word. Iterative (a stack of folders, not recursion): a folder nested
    thousands of levels deep is walked like any other (Path.rglob and os.walk recursed: RecursionError)."""
    entries: list[Path] = []
    unlisted: list[tuple[Path, str]] = []
    stack = [Path(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                children = list(it)
        except OSError as e:
            why = "permission denied" if isinstance(e, PermissionError) else (e.strerror or str(e))
            unlisted.append((folder, f"cannot list this folder ({why}); the photos in it were not read"))
            continue
        for entry in children:
            if entry.name.startswith("."):
                continue
            try:
                is_folder = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_folder = False  # cannot tell: the file's own check reports it
            (stack if is_folder else entries).append(Path(entry.path))
    return sorted(entries), sorted(unlisted)


def _stat(p: Path) -> os.stat_result:
    """os.stat of `p` (following links), with each way it can fail said in words."""
    try:
        return p.stat()
    except FileNotFoundError as e:
        if p.is_symlink():
            raise ImageLoadError(f"broken symbolic link (its target {os.readlink(p)!r} does not exist)",
                                 "not_a_file") from e
        raise ImageLoadError("file not found", "unreadable") from e
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ImageLoadError("symbolic link loop (the link points, maybe through others, back at itself)",
                                 "not_a_file") from e
        raise _os_error(e) from e


def _check_regular(p: Path, info: os.stat_result) -> None:
    mode = info.st_mode
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        if p.is_symlink():
            raise ImageLoadError("symbolic link to a folder (not followed when a folder is searched)", "not_a_file")
        raise ImageLoadError("is a directory, not an image file", "unreadable")
    kinds = [(stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")]
    kind = next((name for test, name in kinds if test(mode)), "special file")
    raise ImageLoadError(f"not a regular file but a {kind}; not opened", "not_a_file")


def _os_error(e: OSError) -> ImageLoadError:
    if isinstance(e, PermissionError):
        return ImageLoadError("permission denied", "unreadable")
    return ImageLoadError(f"cannot read file ({e.strerror or e})", "unreadable")
