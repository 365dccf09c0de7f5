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
whether the cgroup is gone, absent or re-created.  A pass hands its :class:`KeptFiles` to each read
(``read_cgroup_file(directory, name, kept)``); nothing here depends on which thread reads.

"Gone" is decided here and only here: :func:`read_cgroup_file` for cgroup files, :func:`raise_if_gone`
for every other error that may mean a cgroup or a process no longer exists (netns, sentinel).
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


def raise_if_gone(error, path):
    """Raise Gone(path) when the OSError ``error`` means that a cgroup or process no longer exists;
    return otherwise (the caller then handles ``error`` as the fault it is)."""
    if error.errno in GONE_ERRNOS:
        raise Gone(path) from None


def read_bytes(path, head=None):
    """Whole content of a pseudo-file; with ``head``, its first ``head`` bytes at most (one read)."""
    fd = os.open(path, _FLAGS)
    try:
        if head is not None:
            return os.read(fd, head)
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


_pread = os.pread     # module attribute: the benchmark's tracer replaces it


def read_cgroup_file(directory, name, kept=None, head=None):
    """Content of ``directory/name`` (its first ``head`` bytes, with ``head`` and no ``kept``); None when
    this cgroup simply has no such file.

    Raises Gone when the directory itself is gone, OSError for other failures
    (EACCES, EIO) so the caller can skip that file and log it.

    With ``kept`` (the pass's :class:`KeptFiles`) the file is re-read through its kept descriptor when
    it has one, and kept open when it is read for the first time.
    """
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
        return read_bytes(path, head)
    except OSError as e:
        if e.errno not in GONE_ERRNOS:
            raise
        if e.errno != errno.ENOENT or not os.path.isdir(directory):
            raise Gone(directory)
    # The directory exists, but it may be a new cgroup under the same path (a
    # restart between the open and the check): only a second miss means the
    # file is really absent.
    try:
        return read_bytes(path, head)
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


class DescriptorBudget(object):
    """How many cgroup descriptors may be kept open, shared by the KeptFiles of one process (the
    descriptor table is the process's: every <Module> block and the exit watcher draw on it).  The
    limit is worked out (and RLIMIT_NOFILE raised) when first needed."""

    def __init__(self, limit=None):
        self._lock = threading.Lock()
        self.limit = limit
        self.used = 0

    def room(self):
        if self.limit is None:
            with self._lock:
                if self.limit is None:
                    self.limit = _nofile_limit()
        return self.used < self.limit

    def take(self):
        with self._lock:
            self.used += 1

    def give_back(self):
        with self._lock:
            self.used -= 1


#: The process's budget, the default of every KeptFiles.
PROCESS_BUDGET = DescriptorBudget()


class KeptFiles(object):
    """Cgroup file descriptors kept open between the passes of one collector.

    A pass hands it to :func:`read_cgroup_file`.  ``retain(directories)`` closes those of other
    directories (containers gone or no longer reported).  ``limit``: most descriptors to keep; without
    one, ``budget`` (default: the process's, shared by every KeptFiles) decides; beyond it files are
    read the plain way.  ``close()`` closes everything.
    """

    def __init__(self, limit=None, budget=PROCESS_BUDGET):
        self.dirs = {}              # directory -> {name: fd}
        self.count = 0
        self.own_limit = limit
        self.budget = budget

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
        self.budget.take()
        return data if len(data) < _READ_SIZE else None

    def _room(self):
        if self.own_limit is not None:
            return self.count < self.own_limit
        return self.budget.room()

    # -- closing

    def forget(self, directory, name, close=True):
        """Close (or with ``close`` false, only drop) the descriptor of one file."""
        fds = self.dirs.get(directory)
        if fds is None or name not in fds:
            return
        fd = fds.pop(name)
        self.count -= 1
        self.budget.give_back()
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
        for directory in list(self.dirs):
            self._close_dir(directory)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __len__(self):
        return self.count


# keep_files="auto" (KeepFilesOpen): cgroup files are kept open between passes, and re-read with pread, when
# there are at least KEEP_FILES_FROM containers and at least KEEP_FILES_RATE of them per second of interval.
# A kept file saves its open and close every pass (about 100 us per container of 14 files, two thirds of
# the cost of reading them) and holds a descriptor and about 4.7 KiB of kernel memory (its seq_file
# buffer, charged to collectd's memory cgroup) while kept: 66 MiB at 1000 containers.  At 1000 containers
# and a 1-second interval that buys a tenth of a core; at collectd's default 10 s interval a hundredth.
# The rate keeps files where they save at least half a percent of a core: Interval 1 from 64 containers,
# Interval 10 from 500.  Keeping stops below three quarters of either threshold.
KEEP_FILES_FROM = 64
KEEP_FILES_RATE = 50.0


class KeepPolicy(object):
    """KeepFilesOpen (``True``, ``False`` or ``"auto"``): the :class:`KeptFiles` a pass uses, or None."""

    def __init__(self, mode, limit=None):
        self.mode = mode
        self.kept = KeptFiles(limit) if mode else None
        self.keeping = mode is True     # "auto": decided each pass

    def for_pass(self, n, interval=None):
        """The KeptFiles for a pass over ``n`` containers every ``interval`` seconds (None: unknown, the
        number of containers decides alone), or None (plain reads)."""
        kept = self.kept
        if kept is None:
            return None
        if self.mode == "auto":
            rate = n / interval if interval else float("inf")
            if not self.keeping and n >= KEEP_FILES_FROM and rate >= KEEP_FILES_RATE:
                self.keeping = True
            elif self.keeping and (n < KEEP_FILES_FROM * 3 // 4 or rate < KEEP_FILES_RATE * 3 / 4):
                self.keeping = False
                kept.close()
        return kept if self.keeping else None

    def holding(self):
        """True when some descriptors are kept (then :meth:`retain` is worth its set of directories)."""
        return self.kept is not None and bool(self.kept.dirs)

    def retain(self, directories):
        """After a pass: close the kept files of directories not in ``directories`` (a set)."""
        kept = self.kept
        if kept is not None and kept.dirs and not directories.issuperset(kept.dirs):
            kept.retain(directories)

    def close(self):
        if self.kept is not None:
            self.kept.close()
