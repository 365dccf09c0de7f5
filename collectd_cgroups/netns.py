"""Enter a container's network namespace for a moment, hold nothing afterwards.

Python 3.11 (collectd's embedded interpreter on Debian 12) has no
``os.setns``, so a small cffi shim in ABI mode calls libc's ``setns(2)``: no
compiler at install time, one declaration, nothing else exposed.

``setns(CLONE_NEWNET)`` moves only the calling thread, and collectd runs read
callbacks on a pool of threads it shares with every other plugin: a thread
left in a container's namespace would make the next plugin on it read that
container's network.  So:

- :func:`entered` switches the thread in, yields, and switches it back in a
  ``finally``, on every path, exceptions included.  If switching back fails
  the thread is stranded: :class:`Stranded` is raised, and callers must stop
  using namespaces (see ``network.NetworkReader``).
  :func:`call_in` is the same for one call, without a generator: the
  per-container path uses it to make a netlink socket inside and come
  straight back (the socket stays in the namespace it was made in).
- Nothing outlives a pass.  The namespace is reached through a descriptor
  opened just before ``setns`` and closed as soon as the thread is back.
  :class:`Home`, the descriptor of the namespace to return to, is opened when
  a pass starts and closed when it ends (one open per pass rather than one per
  container: it holds only the host's own namespace).  A descriptor or socket
  kept on a container's namespace would keep it, and its veth, alive after the
  container is gone.
- A PID can be reused.  :func:`open_netns` opens the namespace of a PID and
  then checks that the PID still belongs to the container's cgroup; with a
  pidfd (``pidfd_open``, Linux 5.3+) that check is race free, and on Linux
  6.11+ the namespace comes straight from the pidfd
  (``ioctl(PIDFD_GET_NET_NAMESPACE)``).  Older kernels fall back to
  ``/proc/<pid>/ns/net``.  :class:`KeptPidfds` keeps each container's pidfd
  between passes: a pidfd holds its process, never that process's
  namespaces, so this keeps nothing of a container that has exited.

Failures are :class:`NamespaceError` (an ``OSError`` carrying errno and the
namespace path), or ``fs.Gone`` when the process is gone, or
:class:`PidMoved` when the PID no longer belongs to the container.
"""

import contextlib
import errno
import fcntl
import os
import signal
import threading

from . import fs

CLONE_NEWNET = 0x40000000
# linux/pidfd.h: _IO(PIDFS_IOCTL_MAGIC = 0xFF, 4); Linux 6.11+
PIDFD_GET_NET_NAMESPACE = 0xFF04

_FLAGS = os.O_RDONLY | os.O_CLOEXEC
THREAD_NS = "/proc/thread-self/ns/net"


# -- the shim ------------------------------------------------------------------------------------------------

#: The one C declaration of the shim.  collectd_cgroups/_setns_cffi.py is cffi's out-of-line ABI module for
#: it, generated once (tests/test_netns.py checks that it matches and says how to regenerate it): at run time
#: cffi then needs no C parser (parsing CDEF in process would load pycparser, 2.7 MiB of collectd's memory).
CDEF = "int setns(int fd, int nstype);"


def _cffi_setns():
    try:
        from ._setns_cffi import ffi
    except ImportError:         # a cffi whose backend does not take the generated module: parse CDEF here
        import cffi
        ffi = cffi.FFI()
        ffi.cdef(CDEF)
    libc = ffi.dlopen(None)     # the symbols already loaded into this process: libc's setns

    def setns(fd, nstype):
        if libc.setns(fd, nstype) != 0:
            err = ffi.errno
            raise OSError(err, os.strerror(err))
    return setns


_setns_impl = None
_setns_lock = threading.Lock()


def setns(fd, nstype=CLONE_NEWNET, path=None):
    """``setns(2)`` on the calling thread; NamespaceError (errno, path) on failure."""
    global _setns_impl
    impl = _setns_impl
    if impl is None:
        with _setns_lock:
            if _setns_impl is None:
                _setns_impl = _cffi_setns()
            impl = _setns_impl
    try:
        impl(fd, nstype)
    except OSError as e:
        raise NamespaceError(e.errno, "setns: %s" % os.strerror(e.errno), path or "fd %d" % fd) from None


# -- errors --------------------------------------------------------------------------------------------------

class NamespaceError(OSError):
    """A namespace could not be opened or entered: ``.errno``, ``.strerror``, ``.filename`` (the path)."""

    def __str__(self):
        if not self.errno:
            return "%s: %s" % (self.filename, self.strerror)
        return "%s: %s (errno %d %s)" % (self.filename, self.strerror, self.errno,
                                         errno.errorcode.get(self.errno, "?"))


class Stranded(NamespaceError):
    """The thread could not be returned to its home namespace.  Fatal for namespace work on it."""


class PidMoved(fs.Gone):
    """The PID does not (or no longer) belong(s) to the container's cgroup: reused, or moved away."""


# -- identities ----------------------------------------------------------------------------------------------

def ns_ident(fd):
    """(st_dev, st_ino) of a namespace descriptor: equal for the same namespace, in any process."""
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


def thread_ns_ident():
    """Identity of the calling thread's network namespace now."""
    st = os.stat(THREAD_NS)
    return (st.st_dev, st.st_ino)


class _FdHolder(object):
    """Owns one namespace descriptor ``fd``: ``close()`` closes it (once; again is a no-op), and so does
    leaving a ``with`` block."""

    __slots__ = ("fd",)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Home(_FdHolder):
    """The calling thread's network namespace, to return to.  Open it when a pass starts on a thread, close
    it when the pass ends: it holds only the host's namespace, and only for that long."""

    __slots__ = ("ident", "thread")

    def __init__(self):
        self.fd = os.open(THREAD_NS, _FLAGS)
        try:
            self.ident = ns_ident(self.fd)
        except BaseException:
            os.close(self.fd)
            raise
        self.thread = threading.get_ident()

    def restore(self):
        """Put the calling thread back; Stranded if that is impossible."""
        try:
            setns(self.fd, CLONE_NEWNET, "home namespace")
        except NamespaceError as first:
            try:        # once more: a transient failure (ENOMEM) must not strand the thread
                setns(self.fd, CLONE_NEWNET, "home namespace")
            except NamespaceError:
                raise Stranded(first.errno, "cannot return the thread to its network namespace: %s"
                               % first.strerror, THREAD_NS) from None


@contextlib.contextmanager
def entered(target, home=None):
    """Run the block with the calling thread in the network namespace ``target``.

    ``target``: a path (``/proc/<pid>/ns/net``, ``/run/netns/NAME``: opened, entered and closed before the
    block runs), an :class:`NsHandle` or a namespace descriptor (the caller's to close; it may do so
    inside the block: the thread itself holds the namespace while inside).
    ``home``: a :class:`Home` of this thread; without one, the thread's namespace is opened for the call.
    The thread is back in ``home`` when the block ends, however it ends (or :class:`Stranded` is raised).
    """
    own_home = home is None
    if own_home:
        home = Home()
    elif home.thread != threading.get_ident():
        raise RuntimeError("a Home belongs to the thread that opened it")
    try:
        if isinstance(target, NsHandle):
            setns(target.fd, CLONE_NEWNET, target.path)
            inside = True
        elif isinstance(target, int):
            setns(target, CLONE_NEWNET)
            inside = True
        else:
            try:
                fd = os.open(target, _FLAGS)
            except OSError as e:
                raise NamespaceError(e.errno, os.strerror(e.errno), target) from None
            try:
                inside = False
                setns(fd, CLONE_NEWNET, target)
                inside = True
            finally:
                os.close(fd)
        try:
            yield
        finally:
            if inside:
                home.restore()
    finally:
        if own_home:
            home.close()


def call_in(handle, home, fn):
    """``fn()`` with the calling thread in the namespace of ``handle`` (an :class:`NsHandle`), back in
    ``home`` when this returns or raises.  The lean form of :func:`entered` for the per-container path:
    if the way back fails, a result with a ``close`` method (a socket made inside) is closed before
    :class:`Stranded` goes up."""
    if home.thread != threading.get_ident():
        raise RuntimeError("a Home belongs to the thread that opened it")
    setns(handle.fd, CLONE_NEWNET, handle.path)
    try:
        result = fn()
    except BaseException:
        home.restore()
        raise
    try:
        home.restore()
    except BaseException:
        close = getattr(result, "close", None)
        if close is not None:
            close()
        raise
    return result


# -- a PID's namespace, checked ----------------------------------------------------------------------------

def _pidfd_ok(proc_root):
    """pidfd calls name PIDs of our own PID namespace: usable when ``proc_root`` shows that namespace."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        return os.readlink(proc_root + "/self") == str(os.getpid())
    except OSError:
        return False


_ioctl_works = None     # None: not tried yet; False: this kernel has no PIDFD_GET_NET_NAMESPACE


def pidfd_ioctl_supported():
    """Whether this kernel hands out namespace descriptors from a pidfd (Linux 6.11+)."""
    if _ioctl_works is None:
        try:
            fd = os.pidfd_open(os.getpid())
        except (AttributeError, OSError):
            return False
        try:
            ns = _ns_from_pidfd(fd)
            if ns is not None:
                os.close(ns)
        finally:
            os.close(fd)
    return bool(_ioctl_works)


def _ns_from_pidfd(pidfd):
    """Namespace descriptor from a pidfd, or None where the kernel lacks the ioctl."""
    global _ioctl_works
    if _ioctl_works is False:
        return None
    try:
        fd = fcntl.ioctl(pidfd, PIDFD_GET_NET_NAMESPACE, 0)
    except OSError as e:
        if e.errno in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP) and not _ioctl_works:
            _ioctl_works = False
            return None
        raise
    _ioctl_works = True
    return fd


def pid_in_cgroup(pid, cgroup, proc_root="/proc"):
    """True when ``/proc/<pid>/cgroup`` puts the process in ``cgroup`` or below it (any hierarchy).
    fs.Gone when the process is gone."""
    try:
        text = fs.read_bytes("%s/%d/cgroup" % (proc_root, pid))
    except OSError as e:
        fs.raise_if_gone(e, "%s/%d" % (proc_root, pid))
        raise
    want = cgroup.rstrip("/").encode("utf-8", "surrogateescape")
    under = want + b"/"
    for line in text.split(b"\n"):
        path = line.split(b":", 2)[-1]
        if path == want or path.startswith(under):
            return True
    return False


class NsHandle(_FdHolder):
    """An open network namespace descriptor and its identity; close it soon."""

    __slots__ = ("ident", "path")

    def __init__(self, fd, path):
        self.fd = fd
        self.path = path
        try:
            self.ident = ns_ident(fd)
        except BaseException:
            os.close(fd)
            raise


def open_netns(pid, cgroup, proc_root="/proc", use_pidfd=None):
    """The network namespace of ``pid``, checked to belong to container ``cgroup`` after it was opened.

    Returns an :class:`NsHandle` (the caller closes it).  Raises fs.Gone (the process is gone),
    :class:`PidMoved` (the PID is not in the container's cgroup: reused or moved), NamespaceError
    (EPERM, EACCES...).
    """
    if use_pidfd is None:
        use_pidfd = _pidfd_ok(proc_root)
    pidfd = _pidfd_open(pid, proc_root) if use_pidfd else None
    try:
        return _open_checked(pid, cgroup, proc_root, pidfd)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _pidfd_open(pid, proc_root):
    """A pidfd of ``pid``, or None where the kernel has none (ENOSYS); fs.Gone, NamespaceError."""
    try:
        return os.pidfd_open(pid)
    except OSError as e:
        path = "%s/%d/ns/net" % (proc_root, pid)
        fs.raise_if_gone(e, path)
        if e.errno != errno.ENOSYS:
            raise NamespaceError(e.errno, "pidfd_open: %s" % os.strerror(e.errno), path) from None
        return None


def _open_checked(pid, cgroup, proc_root, pidfd):
    """:func:`open_netns` with the caller's ``pidfd`` of ``pid`` (or None: /proc alone)."""
    path = "%s/%d/ns/net" % (proc_root, pid)
    fd = None
    if pidfd is not None:
        try:
            fd = _ns_from_pidfd(pidfd)
        except OSError as e:
            fs.raise_if_gone(e, path)
            raise NamespaceError(e.errno, "PIDFD_GET_NET_NAMESPACE: %s" % os.strerror(e.errno), path) \
                from None
    if fd is None:
        try:
            fd = os.open(path, _FLAGS)
        except OSError as e:
            fs.raise_if_gone(e, path)
            raise NamespaceError(e.errno, os.strerror(e.errno), path) from None
    handle = NsHandle(fd, path)
    try:
        if not pid_in_cgroup(pid, cgroup, proc_root):
            raise PidMoved("%s: pid %d is not in %s" % (path, pid, cgroup))
        if pidfd is not None:
            # The PID named the pidfd's process while /proc/<pid>/cgroup was read only if that process
            # is still alive now (a PID is not reused before its process is reaped).
            try:
                signal.pidfd_send_signal(pidfd, 0)
            except ProcessLookupError:
                raise fs.Gone(path)
    except BaseException:
        handle.close()
        raise
    return handle


class KeptPidfds(object):
    """pidfds of the PIDs whose namespaces the passes open, kept from pass to pass (one per container).

    A pidfd names one process for as long as it is open, whatever becomes of its PID, and holds only that
    process's ``struct pid``: not its namespaces, which go when the process exits as if nothing were kept.
    So a PID checked once to be in its container's cgroup is the same process in later passes with no new
    pidfd and no read of ``/proc/<pid>/cgroup`` (two thirds of what opening the namespace costs): the
    namespace comes straight from the kept pidfd (Linux 6.11+), or from ``/proc/<pid>/ns/net`` followed
    by a signal 0 through the pidfd that says the process is still the one checked.  The cgroup is checked
    again every ``recheck`` uses (a process moved out of its container by hand); any error on a kept pidfd
    drops it and the full :func:`open_netns` decides.

    The descriptors sit above fs.FD_FLOOR and count in fs.PROCESS_BUDGET, as kept cgroup files do; past
    the budget a PID is opened afresh each pass.  ``retain(pids)`` after a pass closes the others;
    ``close()`` closes all.  One pass at a time (the network reader's rule).
    """

    def __init__(self, proc_root="/proc", recheck=30, budget=None):
        self.proc_root = proc_root
        self.recheck = recheck
        self.budget = budget if budget is not None else fs.PROCESS_BUDGET
        self.kept = {}              # pid -> [pidfd, cgroup, uses since the cgroup was checked]

    def open_netns(self, pid, cgroup):
        """As :func:`open_netns` (with pidfds)."""
        entry = self.kept.get(pid)
        if entry is not None:
            if entry[1] == cgroup and entry[2] < self.recheck:
                entry[2] += 1
                handle = self._from_kept(pid, entry[0])
                if handle is not None:
                    return handle
            self.drop(pid)
        pidfd = _pidfd_open(pid, self.proc_root)
        if pidfd is None:
            return _open_checked(pid, cgroup, self.proc_root, None)
        try:
            handle = _open_checked(pid, cgroup, self.proc_root, pidfd)
        except BaseException:
            os.close(pidfd)
            raise
        self._keep(pid, pidfd, cgroup)
        return handle

    def _from_kept(self, pid, pidfd):
        path = "%s/%d/ns/net" % (self.proc_root, pid)
        try:
            fd = _ns_from_pidfd(pidfd)
            if fd is None:
                fd = os.open(path, _FLAGS)
                try:
                    signal.pidfd_send_signal(pidfd, 0)
                except BaseException:
                    os.close(fd)
                    raise
        except OSError:
            return None
        return NsHandle(fd, path)

    def _keep(self, pid, pidfd, cgroup):
        try:
            if not self.budget.room():
                return
            high = fcntl.fcntl(pidfd, fcntl.F_DUPFD_CLOEXEC, fs.FD_FLOOR)
        except OSError:
            return
        finally:
            os.close(pidfd)
        self.kept[pid] = [high, cgroup, 0]
        self.budget.take()

    def drop(self, pid):
        """Close the kept pidfd of ``pid`` (if any)."""
        entry = self.kept.pop(pid, None)
        if entry is not None:
            self.budget.give_back()
            try:
                os.close(entry[0])
            except OSError:
                pass

    def retain(self, pids):
        """Close the pidfds of PIDs not in ``pids`` (a set): containers gone, PIDs exited."""
        if not pids.issuperset(self.kept):
            for pid in [p for p in self.kept if p not in pids]:
                self.drop(pid)

    def close(self):
        for pid in list(self.kept):
            self.drop(pid)

    def __len__(self):
        return len(self.kept)
