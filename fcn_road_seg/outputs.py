"""Every file the package writes goes through here: written whole or not at all, and checked.

A file is written to a temporary file in the same folder, then moved into place with ``os.replace``; the checks
make a failure one ``OutputError`` naming the path, the operating system's reason and the fix. A core leaf:
imports only ``errors``.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import resource
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import FcnRoadSegError, OutputError

__all__ = ["replacing", "write_bytes", "write_text", "write_json", "write_image", "write_figure",
           "output_error", "check_writable", "check_room", "existing_ancestor", "probe_error"]

_FIXES = {
    errno.ENOSPC: "free disk space or write to another disk",
    errno.EDQUOT: "free space within your disk quota or write elsewhere",
    errno.EFBIG: "the file-size limit (`ulimit -f`) is too small for this file: raise it or write less",
    errno.EROFS: "the file system is read-only: choose a folder on a writable one",
    errno.EACCES: "choose a folder you may write to (or change its permissions)",
    errno.EPERM: "choose a folder you may write to (or change its permissions)",
    errno.ENOTDIR: "a parent of this path is a file, not a folder: choose another path",
    errno.EISDIR: "a folder stands where the file should be: remove it or choose another path",
}


def output_error(path: str | Path, err: BaseException) -> OutputError:
    """``OutputError`` for a failed write of ``path``: the path, the OS reason and the fix, in one line."""
    code = getattr(err, "errno", None)
    reason = getattr(err, "strerror", None) or str(err)
    fix = _FIXES.get(code, "check that the folder exists, is writable and has room")
    return OutputError(f"cannot write {path}: {reason}; {fix}")


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that wants a file name (``torch.save``, ``onnx.save``).

    It becomes ``path`` only when the block completes, and is removed otherwise.
    """
    path = Path(path)
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file where a folder of the path should be
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)) from None
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # the umask applies, as for open()
    except OSError as err:
        raise output_error(path, err) from err
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        raise output_error(path, err) from err
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` whole (flushed to disk) or not at all; ``OutputError`` on failure."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data, indent: int = 2) -> Path:
    return write_text(path, json.dumps(data, indent=indent))


def write_image(path: str | Path, image) -> Path:
    """Encode ``image`` (uint8 HxW or HxWx3 BGR) in the format of ``path``'s suffix and write it."""
    import cv2

    ok, encoded = cv2.imencode(Path(path).suffix or ".png", image)
    if not ok:
        raise OutputError(f"cannot encode a {getattr(image, 'shape', '?')} image as {path}; use .png or .jpg")
    return write_bytes(path, encoded.tobytes())


def write_figure(path: str | Path, figure) -> Path:
    """Render a matplotlib ``figure`` in the format of ``path``'s suffix and write it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png")
    return write_bytes(path, buffer.getvalue())


def existing_ancestor(path: Path) -> Path:
    """Return ``path`` if it exists, else its nearest existing parent."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def probe_error(folder: Path) -> OSError | None:
    """Return why no file can be created in the existing ``folder``, or None (tried: a temporary file, removed)."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".fcn_road_seg_probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        return err
    return None


def check_writable(folder: str | Path, flag: str = "--out") -> None:
    """Check before long work that ``folder`` (created later if missing) can take files.

    A folder that is a file, or lies under one, is a bad argument (``FcnRoadSegError``); a folder that refuses a
    probe file is an ``OutputError``. Creates nothing that stays.
    """
    folder = Path(folder)
    existing = existing_ancestor(folder.absolute())
    if not existing.is_dir():
        where = "is a file" if existing == folder.absolute() else f"lies under {existing}, which is a file"
        raise FcnRoadSegError(f"{flag} {folder} {where}; give a folder (it is created if missing)")
    err = probe_error(existing)
    if err is not None:
        raise output_error(existing if existing == folder.absolute() else folder, err) from err


def check_room(path: str | Path, need_bytes: int, what: str) -> None:
    """Raise ``OutputError`` when ``what`` (one file of about ``need_bytes`` at ``path``) cannot fit.

    It cannot fit with less free disk space than that, or a smaller file-size limit (``ulimit -f``).
    """
    where = existing_ancestor(Path(path).absolute())
    free = shutil.disk_usage(where).free
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    need = f"cannot write {path}: about {need_bytes / 1e6:.1f} MB for {what}"
    if need_bytes > free:
        raise OutputError(f"{need}, but {where} has {free / 1e6:.1f} MB free; free disk space or write to "
                          "another disk")
    if limit != resource.RLIM_INFINITY and need_bytes > limit:
        raise OutputError(f"{need}, but the file-size limit (`ulimit -f`) is {limit / 1e6:.1f} MB; raise the "
                          "limit or write fewer frames")
