"""Cgroup hierarchies from /proc/self/mountinfo.

Handles v1 with one controller per mount, co-mounted controllers
(``cpu,cpuacct``), named hierarchies (``name=systemd``), the legacy single
mount with every controller in one tree, pure v2 and hybrid (v1 controllers
plus a cgroup2 mount).  For each controller the plugin reads, ``Hierarchies``
says which mount serves it and whether that mount speaks v1 or v2; a hierarchy
mounted more than once is served by one of its mounts (:func:`serving`).

Every path is joined to a root prefix, so the same code reads the live
system (root ``/``) or a captured tree (``--root DIR``).
"""

import os
import re

from . import fs
from .root import HostRoot

# Controllers whose files the plugin reads, and the cgroup2 name of each.
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids", "blkio")
V2_NAME = {"cpu": "cpu", "cpuacct": "cpu", "memory": "memory", "pids": "pids", "blkio": "io"}

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field):
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


class Mount(object):
    """One mounted cgroup hierarchy."""

    __slots__ = ("version", "path", "root", "controllers", "name")

    def __init__(self, version, path, root, controllers, name=None):
        self.version = version          # 1 or 2
        self.path = path                # directory on this filesystem (root prefix applied)
        self.root = root                # cgroup path of the mount's top directory ("/" normally)
        self.controllers = frozenset(controllers)
        self.name = name                # v1 named hierarchy, e.g. "systemd"

    def dir_for(self, cgroup_path):
        """Directory of a cgroup path (as in /proc/<pid>/cgroup) under this mount, or None."""
        root = self.root.rstrip("/")
        if root:
            if cgroup_path != root and not cgroup_path.startswith(root + "/"):
                return None
            cgroup_path = cgroup_path[len(root):]
        return self.path + cgroup_path.rstrip("/") if cgroup_path not in ("", "/") else self.path

    def __repr__(self):
        return "Mount(v%d %s root=%s %s)" % (self.version, self.path, self.root,
                                            ",".join(sorted(self.controllers)) or self.name)


def _text(text):
    """str as it is; bytes decoded as fs.read_text does (UTF-8, undecodable bytes surrogate-escaped)."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text).decode("utf-8", "surrogateescape")
    if not isinstance(text, str):
        raise TypeError("mountinfo or /proc/cgroups text: str or bytes, not %s" % type(text).__name__)
    return text


def parse_mountinfo(text, prefix=""):
    """Cgroup mounts listed in a mountinfo text (str, or bytes), in mount order.

    Lines that are not mountinfo lines (too few fields, no ``-`` separator, a root or mount point that is
    not an absolute path, a NUL character) are skipped.  Raises nothing for any str or bytes; TypeError
    for anything else."""
    mounts = []
    # Lines end with "\n" only: the kernel escapes space, tab, newline and backslash in paths (as \ooo),
    # not the other characters str.splitlines() would break a line at (\x0b, \x1c, \x85, \u2028...).
    for line in _text(text).split("\n"):
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
            fstype, superopts = fields[sep + 1], fields[sep + 3]
            root, mountpoint = _unescape(fields[3]), _unescape(fields[4])
        except (ValueError, IndexError):
            continue
        if not root.startswith("/") or not mountpoint.startswith("/") or "\0" in root or "\0" in mountpoint:
            continue
        # Below the prefix already: this process's own view of the system's tree (collectd in a container
        # with the host's tree under HostRoot reads its own mount table there).
        path = mountpoint if not prefix or mountpoint.startswith(prefix + "/") else prefix + mountpoint
        if fstype == "cgroup2":
            mounts.append(Mount(2, path, root, ()))
        elif fstype == "cgroup":
            controllers, name = [], None
            for opt in superopts.split(","):
                if opt.startswith("name="):
                    name = opt[5:]
                elif opt in KNOWN_V1_CONTROLLERS:
                    controllers.append(opt)
            mounts.append(Mount(1, path, root, controllers, name))
    return mounts


# Every v1 controller the kernel has had; mount options besides these are flags.
KNOWN_V1_CONTROLLERS = frozenset((
    "cpuset", "cpu", "cpuacct", "blkio", "memory", "devices", "freezer",
    "net_cls", "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc", "debug"))


def parse_proc_cgroups(text):
    """/proc/cgroups (str, or bytes) -> {controller: (hierarchy_id, enabled)}; hierarchy 0 means v2 or
    unmounted.  Lines that do not fit (the ``#subsys_name`` header, too few fields, fields that are not
    ASCII digits) are skipped.  Raises nothing for any str or bytes; TypeError for anything else."""
    known = {}
    for line in _text(text).split("\n"):
        if line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) >= 4 and parts[1].isascii() and parts[1].isdigit() and parts[3].isascii() \
                and parts[3].isdigit():
            known[parts[0]] = (int(parts[1]), parts[3] == "1")
    return known


def serving(mounts):
    """The one mount of a hierarchy that serves it, among ``mounts`` of that hierarchy (bind mounts of a
    subtree, the same tree mounted twice, a container's own mount next to the host's): the one whose root
    is ``/``, else the widest root; the first listed among equals.  None for no mount."""
    best = None
    for m in mounts:
        if best is None or len(m.root.rstrip("/")) < len(best.root.rstrip("/")):
            best = m
    return best


def unified_mount(mounts):
    """The cgroup2 mount that serves the unified hierarchy (:func:`serving`), or None."""
    return serving(m for m in mounts if m.version == 2)


class Hierarchies(object):
    """Which mount serves each controller, for one root prefix.  ``v2_controllers``: the
    ``cgroup.controllers`` of :func:`unified_mount`'s top directory (one mount gives both the list
    and every read)."""

    def __init__(self, mounts, known_controllers=None, v2_controllers=()):
        self.mounts = mounts
        self.known = known_controllers or {}
        self.unified = unified_mount(mounts)
        self.by_controller = {}
        for c in KNOWN_V1_CONTROLLERS:
            m = serving(m for m in mounts if m.version == 1 and c in m.controllers)
            if m is not None:
                self.by_controller[c] = m
        self.v2_controllers = frozenset(v2_controllers)
        if self.unified is not None:
            for c in V1_CONTROLLERS:
                # cgroup2 has cpu.stat usage figures in every cgroup, with or without
                # the cpu controller: CPU usage never depends on it being enabled.
                if c not in self.by_controller and (V2_NAME[c] in self.v2_controllers or c == "cpuacct"):
                    self.by_controller[c] = self.unified

    @property
    def mode(self):
        """'v1', 'v2', 'hybrid' or 'none'."""
        has_v1 = any(m.version == 1 and m.controllers for m in self.mounts)
        if has_v1 and self.unified is not None:
            return "hybrid"
        if has_v1:
            return "v1"
        if self.unified is not None:
            return "v2"
        return "none"

    def mount_for(self, controller):
        return self.by_controller.get(controller)

    def walk_mounts(self):
        """Distinct mounts worth walking for containers: every mount serving a
        controller we read, plus the cgroup2 mount (pressure files live there)."""
        seen, out = set(), []
        for c in V1_CONTROLLERS:
            m = self.by_controller.get(c)
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                out.append(m)
        if self.unified is not None and id(self.unified) not in seen:
            out.append(self.unified)
        return out

    def describe(self):
        lines = ["cgroup layout: %s" % self.mode]
        for c in V1_CONTROLLERS:
            m = self.by_controller.get(c)
            if m is not None:
                where = "v%d %s" % (m.version, m.path)
            elif c in self.known and not self.known[c][1]:
                where = "disabled in the kernel (/proc/cgroups)"
            elif self.known and c not in self.known:
                where = "not built into the kernel"
            else:
                where = "not mounted"
            lines.append("  %-8s %s" % (c, where))
        if self.unified is not None:
            lines.append("  %-8s %s (controllers: %s)" % (
                "cgroup2", self.unified.path, " ".join(sorted(self.v2_controllers)) or "none"))
        return "\n".join(lines)


def load(root="/"):
    """Read the hierarchies of the system under ``root``."""
    root = HostRoot(root)
    mountinfo = fs.read_text(root.proc("self", "mountinfo"))
    mounts = parse_mountinfo(mountinfo, root.prefix)
    try:
        known = parse_proc_cgroups(fs.read_text(root.proc("cgroups")))
    except OSError:
        known = {}
    v2_controllers = ()
    unified = unified_mount(mounts)
    if unified is not None:
        try:
            v2_controllers = fs.read_text(os.path.join(unified.path, "cgroup.controllers")).split()
        except OSError:
            pass
    return Hierarchies(mounts, known, v2_controllers)
