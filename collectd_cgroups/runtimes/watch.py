"""inotify watches on the directories that hold containers' names (Docker's ``containers/<id>/``,
containers/storage's ``<driver>-containers/``), so that a rename costs a pass nothing until it happens:
one non-blocking read of one descriptor per pass says which directories had a file written or renamed
into them (dockerd and containers/storage write their state files by writing a temporary file and
renaming it over the old one).

Where inotify cannot serve (no inotify, the per-user watch limit reached, more than MAX_WATCHES of ours),
:meth:`StateWatch.watch` says so and the resolver falls back to looking at the file itself.  A watch pins
the directory's inode only, never a namespace; it goes when the directory is removed (IN_IGNORED) or when
no container needs it any more.
"""

import ctypes
import errno
import os
import struct
import weakref

IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x2, 0x8, 0x80, 0x100
IN_DELETE_SELF, IN_Q_OVERFLOW, IN_IGNORED, IN_ONLYDIR = 0x400, 0x4000, 0x8000, 0x01000000
MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_ONLYDIR
MAX_WATCHES = 8192          # of ours: the rest of the user's inotify watch limit is other programs'
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)
_libc = None


def _lib():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.inotify_add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
    return _libc


class StateWatch(object):
    """One inotify descriptor and a watch per directory in use (counted by its users)."""

    def __init__(self):
        self.fd = None
        self.dirs = {}          # directory -> [wd, users]
        self.by_wd = {}         # wd -> directory
        self.disabled = None    # why inotify does not serve (None: it does, or has not been tried)

    def watch(self, directory):
        """Count one more user of ``directory``'s watch; False when it cannot be watched."""
        entry = self.dirs.get(directory)
        if entry is not None:
            entry[1] += 1
            return True
        if self.disabled is not None or len(self.dirs) >= MAX_WATCHES:
            return False
        libc = _lib()
        if self.fd is None:
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd < 0:
                self.disabled = os.strerror(ctypes.get_errno())
                return False
            self.fd = fd
            # Closed with this object if nobody calls close() (a collector dropped by a program using many).
            self._closer = weakref.finalize(self, os.close, fd)
        wd = libc.inotify_add_watch(self.fd, os.fsencode(directory), MASK)
        if wd < 0:
            if ctypes.get_errno() == errno.ENOSPC:
                self.disabled = "the inotify watch limit (fs.inotify.max_user_watches) is reached"
            return False
        self.dirs[directory] = [wd, 1]
        self.by_wd[wd] = directory
        return True

    def unwatch(self, directory):
        """One user less; the watch goes with its last user."""
        entry = self.dirs.get(directory)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self.dirs[directory]
            self.by_wd.pop(entry[0], None)
            _lib().inotify_rm_watch(self.fd, entry[0])

    def changed(self):
        """The watched directories something was written or renamed into since the last call (all of
        them after a queue overflow); directories removed are no longer watched."""
        out = set()
        if self.fd is None:
            return out
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                return set(self.dirs)
            if not data:
                break
            pos = 0
            while pos + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
                pos += _EVENT.size + length
                if mask & IN_Q_OVERFLOW:
                    out.update(self.dirs)
                    continue
                directory = self.by_wd.get(wd)
                if directory is None:
                    continue
                out.add(directory)
                if mask & IN_IGNORED:        # removed (or unwatched): the kernel dropped the watch
                    self.by_wd.pop(wd, None)
                    entry = self.dirs.pop(directory, None)
                    if entry is not None and entry[0] != wd:
                        self.dirs[directory] = entry
        return out

    def close(self):
        if self.fd is not None:
            self._closer()
            self.fd = None
        self.dirs.clear()
        self.by_wd.clear()
