"""The system being read: the live host (``/``) or a tree below another directory.

Every path the plugin reads goes through one :class:`HostRoot`: ``HostRoot("/")`` reads the live
``/proc`` and ``/sys``; ``HostRoot("/host")`` reads ``/host/proc/...`` and ``/host/sys/...`` (collectd
in a container with the host's trees mounted there, ``HostRoot``), and the CLI's ``--root DIR`` reads a
captured tree the same way.
"""


class HostRoot(object):
    """One root directory.  ``join(path)`` puts an absolute path of the system below it."""

    __slots__ = ("prefix",)

    def __init__(self, root="/"):
        if isinstance(root, HostRoot):
            root = root.path
        # "" and "/" are the live system; anything else loses its trailing slashes.
        self.prefix = "" if root in ("", "/") else root.rstrip("/")

    @property
    def path(self):
        return self.prefix or "/"

    @property
    def is_live(self):
        """True for the running system itself (processes there can be entered, signalled, moved)."""
        return not self.prefix

    def join(self, path):
        """``path`` (absolute, as the system itself names it) below this root."""
        return self.prefix + path

    def proc(self, *parts):
        """``<root>/proc/<parts>``."""
        return "/".join((self.prefix + "/proc",) + tuple(str(p) for p in parts))

    def sys(self, *parts):
        """``<root>/sys/<parts>``."""
        return "/".join((self.prefix + "/sys",) + tuple(str(p) for p in parts))

    def __eq__(self, other):
        return isinstance(other, HostRoot) and other.prefix == self.prefix

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self.prefix)

    def __repr__(self):
        return "HostRoot(%r)" % self.path
