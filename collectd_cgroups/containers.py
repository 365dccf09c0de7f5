"""Find container cgroups and name them.

Each pass walks every mounted hierarchy the plugin reads, decides for each
cgroup directory whether it is a container (built-in runtime layouts, or a
user's ``Match`` pattern), does not descend into containers (their
sub-cgroups belong to them), and merges what it finds in several
hierarchies into one record per container.  Names come from the runtime's
on-disk state where that needs no API call, else the 12-character short id.
"""

import json
import os
import re
import time

from . import fs
from .root import HostRoot
from .identifiers import sha1

# Basenames of container cgroups in the layouts of the runtimes we know.  One
# combined expression keeps the per-directory cost to one match.
_BASENAME = re.compile(
    r"^(?:(?P<hex>[0-9a-f]{64})"
    r"|docker-(?P<docker>[0-9a-f]{64})\.scope"
    r"|libpod-(?P<podman>[0-9a-f]{64})(?:\.scope)?"
    r"|cri-containerd-(?P<containerd>[0-9a-f]{64})\.scope"
    r"|crio-(?P<crio>[0-9a-f]{64})(?:\.scope)?"
    r"|lxc\.payload\.(?P<lxc>.+)"
    r"|machine-(?P<nspawn>.+)\.scope)$")

_HEX_ID = re.compile(r"^[0-9a-f]{12,}$")
_KUBE_POD = re.compile(r"^pod[0-9a-f_-]+$")
_SYSTEMD_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")

# Where the runtimes keep their state by default (DockerDataRoot, ContainersStorage).
DOCKER_ROOT = "/var/lib/docker"
STORAGE_ROOT = "/var/lib/containers/storage"

RUNTIMES = ("docker", "podman", "lxc", "k8s", "containerd", "crio", "nspawn")

IGNORED = "ignored"          # a decision: matched, but the user ignores it
MAX_DEPTH = 16               # guard against pathological trees


class Container(object):
    """One container: where its cgroups are and what to call it."""

    __slots__ = ("runtime", "id", "name", "cgroup", "dirs", "inode")

    def __init__(self, runtime, cid, name, cgroup, inode=None):
        self.runtime = runtime
        self.id = cid
        self.name = name
        self.cgroup = cgroup      # cgroup path as in /proc/<pid>/cgroup
        self.dirs = {}            # mount path -> this container's directory in that mount
        self.inode = inode        # of the first directory found: a re-created cgroup gets a new one

    @property
    def key(self):
        return (self.runtime, self.id)

    @property
    def short_id(self):
        """The id's first 12 characters for runtime ids (hex); for ids that are
        names or paths, 12 hex digits of their hash, which stay apart."""
        if _HEX_ID.match(self.id):
            return self.id[:12]
        return sha1(self.id.encode("utf-8", "surrogateescape")).hexdigest()[:12]

    def meta(self):
        return {"runtime": self.runtime, "container_id": self.id, "cgroup": self.cgroup}

    def __repr__(self):
        return "Container(%s %s %s)" % (self.runtime, self.name, self.cgroup)


def systemd_unescape(name):
    return _SYSTEMD_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)


def builtin_decision(parent, basename, enabled):
    """(runtime, id, name or None) when ``parent/basename`` is a container
    cgroup in a layout we know, else None."""
    m = _BASENAME.match(basename)
    if m is None:
        if parent.endswith("/lxc") and parent.count("/") == 1 and "lxc" in enabled \
                and not basename.startswith("lxc.monitor") and basename != "lxc.pivot":
            return ("lxc", basename, basename)          # LXC before 4.0: /lxc/<name>
        return None
    kind = m.lastgroup
    value = m.group(kind)
    parent_base = parent.rsplit("/", 1)[-1]
    if kind == "hex":
        if parent_base == "docker":
            runtime = "docker"                     # cgroupfs driver, also under --cgroup-parent
        elif _KUBE_POD.match(parent_base) and "/kubepods" in parent:
            runtime = "k8s"                        # kubelet cgroupfs driver: runtime not in the path
        else:
            return None
        return (runtime, value, None) if runtime in enabled else None
    if kind == "lxc":
        if value.startswith("lxc.monitor") or kind not in enabled:
            return None
        return ("lxc", value, value)
    if kind == "nspawn":
        if parent_base != "machine.slice" or kind not in enabled:
            return None
        name = systemd_unescape(value)
        return ("nspawn", name, name)
    return (kind, value, None) if kind in enabled else None


class Matcher(object):
    """Decides which cgroup paths are containers."""

    def __init__(self, match=(), ignore=(), runtimes=RUNTIMES):
        self.match = list(match)      # [(compiled regex, runtime label)]
        self.ignore = list(ignore)    # [compiled regex]
        self.runtimes = frozenset(runtimes)

    def decide(self, path, parent, basename):
        decision = None
        for regex, runtime in self.match:
            m = regex.search(path)
            if m is not None:
                groups = m.groupdict()
                cid = groups.get("id") or path
                decision = (runtime, cid, groups.get("name") or path.lstrip("/"))
                break
        if decision is None:
            decision = builtin_decision(parent, basename, self.runtimes)
        if decision is not None and any(r.search(path) for r in self.ignore):
            return IGNORED
        return decision

    def container_path(self, path):
        """The container cgroup that ``path`` (from /proc/<pid>/cgroup) lies in:
        the shallowest ancestor-or-self that is a container, as the walk sees it."""
        parts = path.rstrip("/").split("/")
        for i in range(2, len(parts) + 1):
            candidate = "/".join(parts[:i])
            parent, base = candidate.rsplit("/", 1)
            decision = self.decide(candidate, parent, base)
            if decision is IGNORED:
                return None
            if decision is not None:
                return candidate, decision
        return None


class Discovery(object):
    """Walks the hierarchies each pass.  Decisions and names are cached by
    path / container and forgotten when the container is gone."""

    def __init__(self, matcher, names):
        self.matcher = matcher
        self.names = names
        self._decisions = {}

    def discover(self, hierarchies):
        found = {}
        decisions = self._decisions
        seen_paths = set()
        for mount in hierarchies.walk_mounts():
            root = mount.root.rstrip("/")
            self._walk(mount, mount.path, root, 0, found, decisions, seen_paths)
        for path in list(decisions):
            if path not in seen_paths:
                del decisions[path]
        self.names.forget_except(found)
        return list(found.values())

    def _walk(self, mount, directory, cgroup_path, depth, found, decisions, seen_paths):
        try:
            entries = os.scandir(directory)
        except OSError:
            return  # removed while walking, or unreadable: nothing below to report
        with entries:
            subdirs = [(e.name, e.inode()) for e in entries if e.is_dir(follow_symlinks=False)]
        for base, inode in subdirs:
            path = cgroup_path + "/" + base
            seen_paths.add(path)
            try:
                decision = decisions[path]
            except KeyError:
                decision = decisions[path] = self.matcher.decide(path, cgroup_path or "/", base)
            if decision is None:
                if depth < MAX_DEPTH:
                    self._walk(mount, directory + "/" + base, path, depth + 1, found, decisions, seen_paths)
                continue
            if decision is IGNORED:
                continue
            runtime, cid, name = decision
            container = found.get((runtime, cid))
            if container is None:
                container = found[(runtime, cid)] = Container(
                    runtime, cid, name or self.names.lookup(runtime, cid), path, inode)
            container.dirs.setdefault(mount.path, directory + "/" + base)


class NameResolver(object):
    """Container names from runtime state on disk (no API calls).

    Docker: ``<DockerDataRoot>/containers/<id>/config.v2.json`` (``Name``).
    podman and CRI-O: containers/storage's ``*-containers/containers.json``
    (``names``), reloaded when it changes.  A name not found yet is retried
    after ``retry`` seconds; until then the short id stands in.
    """

    def __init__(self, root="/", docker_root=DOCKER_ROOT,
                 storage_root=STORAGE_ROOT, retry=30.0, clock=time.monotonic):
        self.root = HostRoot(root)
        self.docker_root = docker_root
        self.storage_root = storage_root
        self.retry = retry
        self.clock = clock
        self._cache = {}          # (runtime, id) -> (name, retry_at or None)
        self._storage_names = {}
        self._storage_mtimes = None

    def lookup(self, runtime, cid):
        entry = self._cache.get((runtime, cid))
        now = self.clock()
        if entry is not None and (entry[1] is None or now < entry[1]):
            return entry[0]
        name = None
        if runtime == "docker":
            name = self._docker_name(cid)
        elif runtime in ("podman", "crio", "k8s", "containerd"):
            name = self._storage_name(cid)
        if name:
            self._cache[(runtime, cid)] = (name, None)
            return name
        self._cache[(runtime, cid)] = (cid[:12], now + self.retry)
        return cid[:12]

    def forget_except(self, found):
        if len(self._cache) > len(found):
            for key in [k for k in self._cache if k not in found]:
                del self._cache[key]

    def _docker_name(self, cid):
        path = self.root.join("%s/containers/%s/config.v2.json" % (self.docker_root, cid))
        try:
            name = json.loads(fs.read_bytes(path)).get("Name")
        except (OSError, ValueError, AttributeError):
            return None
        return name.lstrip("/") if isinstance(name, str) and name.strip("/") else None

    def _storage_files(self):
        base = self.root.join(self.storage_root)
        try:
            return [os.path.join(base, d, "containers.json") for d in sorted(os.listdir(base))
                    if d.endswith("-containers")]
        except OSError:
            return []

    def _storage_name(self, cid):
        files = self._storage_files()
        mtimes = []
        for path in files:
            try:
                mtimes.append(os.stat(path).st_mtime_ns)
            except OSError:
                mtimes.append(None)
        if mtimes != self._storage_mtimes:
            self._storage_mtimes = mtimes
            self._storage_names = {}
            for path in files:
                try:
                    entries = json.loads(fs.read_bytes(path))
                except (OSError, ValueError):
                    continue
                for entry in entries if isinstance(entries, list) else ():
                    if isinstance(entry, dict) and entry.get("names"):
                        self._storage_names[entry.get("id")] = entry["names"][0]
        return self._storage_names.get(cid)


def compile_patterns(patterns, option):
    """Compile user regexes; a bad one fails naming the option."""
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p))
        except re.error as e:
            raise ValueError("%s: invalid regular expression %r: %s" % (option, p, e))
    return out


def cgroups_of_pid(pid, root="/"):
    """Cgroup paths of a process, from /proc/<pid>/cgroup."""
    text = fs.read_text(HostRoot(root).proc(pid, "cgroup"))
    paths = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[2] not in paths:
            paths.append(parts[2])
    return paths


# -- containers' PIDs -------------------------------------------------------------------------------------------

MAX_WALK = 64


def first_pid(container_dirs):
    """The first PID listed in ``cgroup.procs`` of the container's directories (a dict's values or any
    iterable of paths), looking below a directory whose own list is empty (processes may live in
    sub-cgroups only: nspawn, nested runtimes).  None for an empty container; fs.Gone when it vanished."""
    if isinstance(container_dirs, dict):
        container_dirs = container_dirs.values()
    gone = None
    for directory in container_dirs:
        try:
            pid = _first_pid_below(directory, 0, [0])
        except fs.Gone as e:
            gone = e
            continue
        if pid is not None:
            return pid
    if gone is not None:
        raise gone
    return None


def _first_pid_below(directory, depth, visited):
    visited[0] += 1
    data = fs.read_cgroup_file(directory, "cgroup.procs")
    if data:
        return int(data.split(None, 1)[0])
    if depth >= 8:
        return None
    try:
        with os.scandir(directory) as entries:
            subdirs = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
    except OSError:
        return None
    for name in subdirs:
        if visited[0] >= MAX_WALK:
            return None
        try:
            pid = _first_pid_below(directory + "/" + name, depth + 1, visited)
        except fs.Gone:
            continue
        if pid is not None:
            return pid
    return None
