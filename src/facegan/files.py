"""Writing files safely: atomic replacement, and never over something facegan did not mean to replace.

Core module: no torch, no numpy. Every file facegan writes (JSON, PNG, checkpoints, exports) goes
through here, so a reader sees either the old or the new file, never half of one. Reading
untrusted files goes through `read_regular_file`, which never blocks on a FIFO or reads a device.
"""
from __future__ import annotations

import errno
import os
import secrets
import stat
import tempfile
from pathlib import Path

from facegan.errors import FaceganError

# Files facegan creates get 0666 and folders 0777, both minus the user's umask (what `touch` and
# `mkdir` do), so a shared group folder stays shared.
FILE_MODE = 0o666
FOLDER_MODE = 0o777


class ReadRefused(FaceganError):
    """A file that `read_regular_file` would not read; `reason` is a short machine-readable cause."""

    def __init__(self, message: str, reason: str, detail: str = "") -> None:
        super().__init__(message)
        self.reason = reason  # "unreadable" | "not_a_regular_file" | "too_large"
        self.detail = detail


def _kind_of(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_writable_folder(folder: str | os.PathLike, what: str = "output", probe_with_file: bool = True) -> Path:
    """Refuse early when files cannot be created in `folder` (or in the nearest existing folder above it).

    Call it before slow work, so a read-only or mistyped destination fails in a second, not after an hour.
    """
    folder = Path(os.path.abspath(folder))
    probe = folder
    while True:
        try:
            mode = os.stat(probe).st_mode
        except FileNotFoundError:
            if os.path.islink(probe):  # mkdir would fail on it after the slow work ("File exists")
                raise FaceganError(f"cannot write {what} in {folder}: {probe} is a broken symbolic link; choose another path") from None
            if probe.parent == probe:
                break
            probe = probe.parent
            continue
        except OSError as error:
            raise FaceganError(f"cannot write {what} in {folder}: {error.strerror}") from None
        if not stat.S_ISDIR(mode):
            raise FaceganError(f"cannot write {what} in {folder}: {probe} is a file, not a folder; choose another path")
        # os.access asks the kernel with the real uid, so it also knows when root may write anyway.
        if not os.access(probe, os.W_OK | os.X_OK):
            raise FaceganError(f"cannot write {what} in {folder}: the folder {probe} is not writable; choose another path")
        if not probe_with_file:
            break
        # Root passes os.access almost everywhere; a real (empty, removed at once) file settles it for
        # read-only mounts and pseudo-filesystems such as /proc.
        try:
            handle, name = tempfile.mkstemp(prefix=".facegan-write-test-", dir=probe)
        except OSError as error:
            raise FaceganError(
                f"cannot write {what} in {folder}: the folder {probe} is not writable ({error.strerror}); choose another path"
            ) from None
        os.close(handle)
        os.unlink(name)
        break
    return folder


def output_folder_entries(out: str | os.PathLike, what: str) -> tuple[Path, list[str]]:
    """`--out OUT` for a folder facegan is to fill: its absolute path ('.' and '..' resolved, links not followed) and
    what it holds now (nothing when it does not exist yet). A link, a file or an unreadable folder is one line."""
    folder = Path(os.path.abspath(os.path.expanduser(os.fspath(out))))
    if folder.is_symlink():
        raise FaceganError(f"--out {out} is a symbolic link; give the real folder path")
    if not folder.exists():
        return folder, []
    if not folder.is_dir():
        raise FaceganError(f"--out {out} is a file, not a folder; give a new folder path for {what}")
    try:
        return folder, os.listdir(folder)
    except OSError as error:
        raise FaceganError(f"cannot read the output folder {out}: {error.strerror}") from None


def check_writable_target(path: str | os.PathLike, what: str = "output file", probe_with_file: bool = True) -> Path:
    """Refuse (FaceganError, one line) a file path facegan must not write: a folder, a link, a device,
    a FIFO or socket, a path under a file, or one in a folder that is not writable. Returns the path."""
    path = Path(path)
    if str(path).endswith(os.sep) or path.name in ("", ".", ".."):
        raise FaceganError(f"{what} {path} names a folder; give a file path")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except NotADirectoryError:
        blocking = next((parent for parent in path.parents if parent.is_file()), None)
        raise FaceganError(f"cannot write {what} {path}: {blocking or 'a folder in that path'} is a file, not a folder") from None
    except OSError as error:
        raise FaceganError(f"cannot write {what} {path}: {error.strerror}") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise FaceganError(
            f"{what} {path} is {_kind_of(mode)}; facegan only replaces regular files, give another path"
        )
    check_writable_folder(path.parent, what, probe_with_file)
    return path


def write_bytes_atomic(path: str | os.PathLike, payload: bytes) -> None:
    """Write bytes to `path` so a reader sees either the old or the new file, never half of one.

    Refuses non-regular targets (see check_writable_target); on any failure (a full disk) the
    temporary file is removed and the error is one FaceganError line.
    """
    path = check_writable_target(path, probe_with_file=False)  # the write itself is the probe
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FaceganError(f"cannot write {path}: {error.strerror}") from None
    # A random suffix and O_EXCL: two writers (threads or processes) never share a temporary file,
    # and a link planted at the temporary name is not followed.
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
        with open(descriptor, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        if isinstance(error, OSError):
            raise FaceganError(f"cannot write {path}: {error.strerror or error}") from None
        raise


def read_regular_file(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; raises ReadRefused otherwise.

    A link to a regular file is followed; a FIFO, device or socket is refused before it is opened
    (opening a FIFO blocks, a device can be endless), and the size is checked before reading.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as error:  # dangling link, permission denied, vanished
        raise ReadRefused(f"cannot read {path}: {error.strerror}", "unreadable", error.strerror or type(error).__name__) from None
    if not stat.S_ISREG(mode):
        kind = _kind_of(mode)
        raise ReadRefused(f"cannot read {path}: it is {kind}", "not_a_regular_file", kind)
    try:
        # O_NONBLOCK: should the path be swapped for a FIFO after the check, open does not wait for a writer.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise ReadRefused(f"cannot read {path}: {error.strerror}", "unreadable", error.strerror or type(error).__name__) from None
    with open(descriptor, "rb", buffering=0) as handle:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            kind = _kind_of(info.st_mode)
            raise ReadRefused(f"cannot read {path}: it is {kind}", "not_a_regular_file", kind)
        if info.st_size > max_bytes:
            detail = f"{info.st_size} bytes > limit {max_bytes}"
            raise ReadRefused(f"cannot read {path}: {detail}", "too_large", detail)
        try:
            # One byte more than allowed: a file that grows while we read is still caught.
            chunks = []
            remaining = max_bytes + 1
            while remaining > 0:
                chunk = handle.read(min(remaining, 1 << 24))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
        except OSError as error:
            if error.errno == errno.EAGAIN:
                raise ReadRefused(f"cannot read {path}: it is not a regular file", "not_a_regular_file", "would block") from None
            raise ReadRefused(f"cannot read {path}: {error.strerror}", "unreadable", error.strerror or type(error).__name__) from None
    data = b"".join(chunks)
    if len(data) > max_bytes:
        detail = f"more than {max_bytes} bytes"
        raise ReadRefused(f"cannot read {path}: {detail}", "too_large", detail)
    return data


# ---- hidden staging folders, and those a killed process left ---------------------------------------------
# Folders are written whole into a hidden sibling and renamed into place. A process killed with SIGKILL (or a
# power cut) cannot remove its sibling; the next write of the same target removes those of dead processes.
# The name carries the host, so a live writer on another machine sharing the disk is never taken for dead.
def _host_tag() -> str:
    """12 hex digits naming this machine and PID namespace: the full host name, the boot id and the PID namespace
    (containers sharing a host name and a disk see other PIDs). Anything unreadable counts as part of the name."""
    import hashlib
    import socket

    parts = [socket.gethostname()]
    for source in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(os.readlink(source) if source.endswith("/pid") else Path(source).read_text().strip())
        except OSError:
            parts.append("?")
    return hashlib.sha256("\0".join(parts).encode("utf-8", "replace")).hexdigest()[:12]


def staging_sibling(target: str | os.PathLike, kind: str) -> Path:
    """A fresh hidden sibling name for `target`: `.NAME.KIND-HOST-PID-HEX` (not created)."""
    target = Path(target)
    return target.with_name(f".{target.name}.{kind}-{_host_tag()}-{os.getpid()}-{secrets.token_hex(4)}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists (another user's) or not a pid: never treat as dead
    return True


def stale_process(pid: int) -> bool:
    """True when `pid` is not this process and no process with that id runs here."""
    return pid != os.getpid() and not _process_alive(pid)


def stale_siblings(target: str | os.PathLike, kind: str) -> list[Path]:
    """Hidden siblings of `target` of this kind that processes of this host left and no longer run.

    Only folders named by `staging_sibling` count; links and files of the same name are never listed.
    """
    import re

    target = Path(target)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.{re.escape(kind)}-(?P<host>[0-9a-f]{{12}})-(?P<pid>\d{{1,10}})-[0-9a-f]{{8}}")
    host, found = _host_tag(), []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or match["host"] != host or int(match["pid"]) == os.getpid():
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
        except OSError:
            continue
        if not _process_alive(int(match["pid"])):
            found.append(Path(entry.path))
    return sorted(found)


def remove_stale_siblings(target: str | os.PathLike, *kinds: str) -> list[Path]:
    """Remove what `stale_siblings` lists for each kind; returns what was removed (best effort, never raises)."""
    import shutil

    removed = []
    for kind in kinds:
        for folder in stale_siblings(target, kind):
            shutil.rmtree(folder, ignore_errors=True)
            if not os.path.lexists(folder):
                removed.append(folder)
    return removed


def check_format_version(record: dict, config_path: str | os.PathLike, folder: str | os.PathLike, kind: str, current: int,
                         redo: str) -> int:
    """The `format_version` of a saved facegan folder's JSON record, or one FaceganError line: missing or not a whole
    number >= 1 (`redo` says how to make it again), or newer than this facegan reads (upgrade facegan)."""
    version = record.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise FaceganError(f"{config_path} has no valid format_version ({version!r:.40}); {redo}")
    if version > current:
        made_by = record.get("facegan_version")
        by = f", facegan {made_by:.40}" if isinstance(made_by, str) else ""
        raise FaceganError(f"{folder} was made by a newer facegan ({kind} format {version}{by}); upgrade facegan (this one reads format {current})")
    return version


def read_text_option(path: str | os.PathLike, max_bytes: int, option: str, expected: str) -> str:
    """A small UTF-8 text file named by a command-line option, or one FaceganError line naming the option
    (`expected` says what the file should hold, e.g. "its first line must be USER:PASS")."""
    try:
        return read_regular_file(path, max_bytes).decode("utf-8")
    except ReadRefused as refused:
        raise FaceganError(f"{option}: {refused}") from None
    except UnicodeDecodeError:
        raise FaceganError(f"{option} {path} is not UTF-8 text; {expected}") from None
