"""File access for pseudo-files, and the one place that decides "the container is gone".

Cgroup and proc files are small and generated on read: one ``os.read`` with a
buffer larger than the file returns all of it, so a read costs open + read +
close and nothing else.  Python's buffered ``open()`` costs several times that.
"""

import errno
import os

_READ_SIZE = 65536
_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)

# Errors that mean the cgroup (or process) no longer exists: ENOENT when the
# directory was removed, ENODEV when a file of a removed cgroup is read,
# ESRCH for a process that has exited.
GONE_ERRNOS = frozenset((errno.ENOENT, errno.ENODEV, errno.ESRCH))


class Gone(Exception):
    """The cgroup directory (or process) disappeared while being read."""


def read_bytes(path):
    """Whole content of a pseudo-file."""
    fd = os.open(path, _FLAGS)
    try:
        data = os.read(fd, _READ_SIZE)
        if len(data) == _READ_SIZE:  # rare: a file larger than one buffer
            chunks = [data]
            while True:
                chunk = os.read(fd, _READ_SIZE)
                if not chunk:
                    break
                chunks.append(chunk)
            data = b"".join(chunks)
        return data
    finally:
        os.close(fd)


def read_text(path):
    return read_bytes(path).decode("utf-8", "surrogateescape")


def read_cgroup_file(directory, name):
    """Content of ``directory/name``; None when this cgroup simply has no such file.

    Raises Gone when the directory itself is gone, OSError for other failures
    (EACCES, EIO) so the caller can skip that file and log it.
    """
    path = directory + "/" + name
    try:
        return read_bytes(path)
    except OSError as e:
        if e.errno not in GONE_ERRNOS:
            raise
        if e.errno != errno.ENOENT or not os.path.isdir(directory):
            raise Gone(directory)
    # The directory exists, but it may be a new cgroup under the same path (a
    # restart between the open and the check): only a second miss means the
    # file is really absent.
    try:
        return read_bytes(path)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return None
        if e.errno in GONE_ERRNOS:
            raise Gone(directory)
        raise
