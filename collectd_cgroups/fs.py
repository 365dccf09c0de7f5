"""File access for pseudo-files, and the one place that decides "the container is gone".

Cgroup and proc files are small and generated on read: one ``os.read`` with a
buffer larger than the file returns all of it, so a read costs open + read +
close and nothing else.  Python's buffered ``open()`` costs several times that.

During a collector's pass, cgroup files can also be kept open from one pass to
the next and re-read with ``pread(fd, n, 0)`` (:class:`KeptFiles`): the kernel
then regenerates the content without the open and close, which cost about
twice the read itself.  A kept descriptor does not keep its cgroup: ``rmdir``
works, and reads of the removed cgroup's file fail with ENODEV, upon which the
descriptor is closed and the file read the plain way, which decides as before
whether the cgroup is gone, absent or re-created.
"""

import errno
import fcntl
import os
import threading

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


_pass = threading.local()     # .kept: the KeptFiles of the pass running on this thread, if any
_pread = os.pread


def read_cgroup_file(directory, name):
    """Content of ``directory/name``; None when this cgroup simply has no such file.

    Raises Gone when the directory itself is gone, OSError for other failures
    (EACCES, EIO) so the caller can skip that file and log it.

    Inside a pass with kept files (:meth:`KeptFiles.begin` on this thread) the
    file is re-read through its kept descriptor when it has one, and kept open
    when it is read for the first time.
    """
    kept = getattr(_pass, "kept", None)
    if kept is not None:
        fds = kept.dirs.get(directory)
        fd = fds.get(name) if fds is not None else None
        if fd is not None:          # the common case, inline: one pread
            try:
                data = _pread(fd, _READ_SIZE, 0)
            except OSError as e:
                # ENODEV: the cgroup was removed (maybe re-created since).  Anything else means the number
                # is no longer our file (closed by someone else): forget it without closing it.
                kept.forget(directory, name, close=e.errno == errno.ENODEV)
            else:
                if len(data) < _READ_SIZE:
                    return data
        else:
            data = kept.read(directory, name)
            if data is not None:
                return data
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


# -- descriptors kept between passes -------------------------------------------------------------------------

#: Kept descriptors are numbered from here up, so that the numbers below stay free for the rest of the
#: process: code that uses select() (FD_SETSIZE 1024) in other collectd plugins never meets ours.
FD_FLOOR = 1024

#: Files never kept open: v1 caches a process list per open file (re-reads could be up to a second stale).
NEVER_KEEP = frozenset(("cgroup.procs", "tasks", "cgroup.threads"))

#: The soft RLIMIT_NOFILE is raised to this (never above the hard limit) when kept files are first used.
NOFILE_TARGET = 65536

_budget_lock = threading.Lock()
_budget = {"limit": None, "used": 0}


def _nofile_limit():
    """How many descriptors this process may keep open for cgroup files, all KeptFiles together.

    Raises the soft RLIMIT_NOFILE towards NOFILE_TARGET (within the hard limit: a systemd service starts
    with 1024 soft, 524288 hard), then leaves the numbers under FD_FLOOR and an eighth of the rest (at
    least 1024) to everything else in the process."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = NOFILE_TARGET if hard == resource.RLIM_INFINITY else min(hard, NOFILE_TARGET)
        if soft != resource.RLIM_INFINITY and soft < want:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
                soft = want
            except (ValueError, OSError):
                pass
        if soft == resource.RLIM_INFINITY:
            soft = NOFILE_TARGET
    except (ImportError, ValueError, OSError):
        return 0
    room = soft - FD_FLOOR
    return max(0, room - max(1024, room // 8))


class KeptFiles(object):
    """Cgroup file descriptors kept open between the passes of one collector.

    ``begin()`` makes :func:`read_cgroup_file` use them on the calling thread until ``end()``.
    ``retain(directories)`` closes those of other directories (containers gone or no longer reported).
    ``limit``: most descriptors to keep (default: from RLIMIT_NOFILE, shared by every KeptFiles of the
    process); beyond it files are read the plain way.  ``close()`` closes everything.
    """

    def __init__(self, limit=None):
        self.dirs = {}              # directory -> {name: fd}
        self.count = 0
        self.own_limit = limit

    # -- a pass

    def begin(self):
        _pass.kept = self

    def end(self):
        if getattr(_pass, "kept", None) is self:
            _pass.kept = None

    def __enter__(self):
        self.begin()
        return self

    def __exit__(self, *exc):
        self.end()

    def retain(self, directories):
        """Close the descriptors of every directory not in ``directories`` (a set)."""
        for directory in [d for d in self.dirs if d not in directories]:
            self._close_dir(directory)

    # -- reading

    def read(self, directory, name):
        """The content of a file without a kept descriptor: opened and kept now when there is room, else
        None (also on any error): then the caller reads it the plain way, which decides between gone,
        absent and other errors."""
        if name in NEVER_KEEP or not self._room():
            return None
        try:
            low = os.open(directory + "/" + name, _FLAGS)
        except OSError:
            return None
        try:
            fd = fcntl.fcntl(low, fcntl.F_DUPFD_CLOEXEC, FD_FLOOR)
        except OSError:             # no number free above FD_FLOOR: keep nothing more
            self.own_limit = self.count
            return None
        finally:
            os.close(low)
        try:
            data = os.pread(fd, _READ_SIZE, 0)
        except OSError:
            os.close(fd)
            return None
        fds = self.dirs.get(directory)
        if fds is None:
            fds = self.dirs[directory] = {}
        fds[name] = fd
        self.count += 1
        with _budget_lock:
            _budget["used"] += 1
        return data if len(data) < _READ_SIZE else None

    def _room(self):
        if self.own_limit is not None:
            return self.count < self.own_limit
        limit = _budget["limit"]
        if limit is None:
            with _budget_lock:
                if _budget["limit"] is None:
                    _budget["limit"] = _nofile_limit()
                limit = _budget["limit"]
        return _budget["used"] < limit

    # -- closing

    def forget(self, directory, name, close=True):
        """Close (or with ``close`` false, only drop) the descriptor of one file."""
        fds = self.dirs.get(directory)
        if fds is None or name not in fds:
            return
        fd = fds.pop(name)
        self.count -= 1
        with _budget_lock:
            _budget["used"] -= 1
        if close:
            try:
                os.close(fd)
            except OSError:
                pass

    def _close_dir(self, directory):
        for name in list(self.dirs.get(directory, ())):
            self.forget(directory, name)
        self.dirs.pop(directory, None)

    def close(self):
        """Close every kept descriptor."""
        self.end()
        for directory in list(self.dirs):
            self._close_dir(directory)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __len__(self):
        return self.count
