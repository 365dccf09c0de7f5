"""Find container cgroups and name them.

Each pass walks every mounted hierarchy the plugin reads, decides for each
cgroup directory whether it is a container (built-in runtime layouts, or a
user's ``Match`` pattern), does not descend into containers (their
sub-cgroups belong to them), and merges what it finds in several
hierarchies into one record per container.  Kubernetes pod cgroups are the
exception: a pod is reported as a record of its own (runtime ``k8spod``) and
the walk goes on into it, where its containers are.  What the runtimes keep
on disk (runtimes/: names, pods, images, labels) is read once per container.
"""

import os
import re

from . import fs
from .root import HostRoot
from .identifiers import sha1
from .runtimes import Metadata
from .runtimes import kubernetes
from .runtimes.docker import DOCKER_ROOT  # noqa: F401 (the DockerDataRoot default)
from .runtimes.storage import STORAGE_ROOT  # noqa: F401 (the ContainersStorage default)

# Basenames of container cgroups in the layouts of the runtimes we know.  One
# combined expression keeps the per-directory cost to one match.
_BASENAME = re.compile(
    r"^(?:(?P<hex>[0-9a-f]{64})"
    r"|docker-(?P<docker>[0-9a-f]{64})\.scope"
    r"|libpod-(?P<podman>[0-9a-f]{64})(?:\.scope)?"
    r"|cri-containerd-(?P<containerd>[0-9a-f]{64})\.scope"
    r"|crio-(?P<crio>[0-9a-f]{64})(?:\.scope)?"
    r"|lxc\.payload\.(?P<lxc>.+)"
    r"|machine-(?P<nspawn>.+)\.scope"
    r"|pod(?P<kubepod>[0-9a-f][0-9a-f_-]{7,63})"
    r"|kubepods-(?:burstable-|besteffort-)?pod(?P<kubeslice>[0-9a-f][0-9a-f_]{7,63})\.slice)$")

_HEX_ID = re.compile(r"^[0-9a-f]{12,}$")
_BARE_ID = re.compile(r"^[0-9a-f]{64}$")
_KUBE_POD = re.compile(r"^pod[0-9a-f_-]+$|^kubepods-.*pod[0-9a-f_]+\.slice$")
_SYSTEMD_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")

RUNTIMES = ("docker", "podman", "lxc", "k8s", "containerd", "crio", "nspawn")
POD = "k8spod"              # the runtime label of a Kubernetes pod's own cgroup

IGNORED = "ignored"          # a decision: matched, but the user ignores it
MAX_DEPTH = 16               # guard against pathological trees: levels walked below a top directory
MAX_DEEP_LOGGED = 64         # (hierarchy, top directory) pairs whose depth limit is logged
LEAVES_AT = 16               # subdirectories from which a v2 directory's cgroup.stat is worth reading
_UNSET = object()
NOTHING = Metadata()


class Container(object):
    """One container: where its cgroups are and what to call it.

    ``info``: what its runtime keeps on disk (runtimes.Metadata); ``pod``: the record of the Kubernetes
    pod it belongs to, when pods are reported (the pod's network is reported there, not here);
    ``qos``: the pod's QoS class.

    ``key`` tells containers apart within a pass and from one pass to the next (plan.Tracks, Naming,
    the network's namespace owners, the exit watcher): ``(runtime, id)``, except for a container whose
    id another container of the same runtime has under another cgroup path (the same 64-hex id under two
    ``--cgroup-parent``s or two daemons): that one is ``(runtime, id, cgroup)`` (see
    :meth:`Discovery.discover`).  A copy must keep it: :meth:`copy`."""

    __slots__ = ("runtime", "id", "name", "cgroup", "dirs", "inode", "info", "pod", "qos", "key")

    def __init__(self, runtime, cid, name, cgroup, inode=None, info=NOTHING, pod=None, qos=None, key=None):
        self.runtime = runtime
        self.id = cid
        self.name = name
        self.cgroup = cgroup      # cgroup path as in /proc/<pid>/cgroup
        self.dirs = {}            # mount path -> this container's directory in that mount
        self.inode = inode        # of the first directory found: a re-created cgroup gets a new one
        self.info = info
        self.pod = pod
        self.qos = qos
        self.key = key if key is not None else (runtime, cid)

    def copy(self, dirs=None):
        """The same container (its key too), with ``dirs`` (default: a copy of its own)."""
        other = Container(self.runtime, self.id, self.name, self.cgroup, self.inode, self.info, self.pod,
                          self.qos, self.key)
        other.dirs = dict(self.dirs if dirs is None else dirs)
        return other

    @property
    def short_id(self):
        """The id's first 12 characters for runtime ids (hex); for ids that are
        names or paths, 12 hex digits of their hash, which stay apart."""
        if _HEX_ID.match(self.id):
            return self.id[:12]
        return sha1(self.id.encode("utf-8", "surrogateescape")).hexdigest()[:12]

    @property
    def labels(self):
        """The runtime's labels; a pod container's are its pod's (the sandbox's) with its own on top."""
        own = self.info.labels
        if self.pod is not None and self.pod.info.labels:
            return dict(self.pod.info.labels, **own) if own else self.pod.info.labels
        return own

    def meta(self, labels=()):
        """The meta data of its values (SendMeta): ``labels``: the label keys to add (MetaLabel)."""
        meta = {"runtime": self.runtime, "container_id": self.id, "cgroup": self.cgroup}
        info = self.info
        for key in ("namespace", "pod", "container", "pod_uid", "image"):
            value = getattr(info, key)
            if value:
                meta[key] = value
        if self.qos:
            meta["qos"] = self.qos
        if labels:
            have = self.labels
            for key in labels:
                value = have.get(key)
                if value is not None:
                    meta[key] = value
        return meta

    def __repr__(self):
        return "Container(%s %s %s)" % (self.runtime, self.name, self.cgroup)


def systemd_unescape(name):
    return _SYSTEMD_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)


def builtin_decision(parent, basename, enabled, known=None):
    """(runtime, id, name or None) when ``parent/basename`` is a container
    cgroup in a layout we know, else None.  A Kubernetes pod's own cgroup is (POD, uid, None) when
    "k8s" is enabled; its containers are runtime "k8s" whatever runtime and cgroup driver made them.
    ``known``: id -> the runtime whose state has it, or None (runtimes.known_ids), for a bare 64-hex id
    under a parent of no known layout."""
    m = _BASENAME.match(basename)
    if m is None:
        if parent.endswith("/lxc") and parent.count("/") == 1 and "lxc" in enabled \
                and not basename.startswith("lxc.monitor") and basename != "lxc.pivot":
            return ("lxc", basename, basename)          # LXC before 4.0: /lxc/<name>
        return None
    kind = m.lastgroup
    value = m.group(kind)
    parent_base = parent.rsplit("/", 1)[-1]
    if kind in ("kubepod", "kubeslice"):
        if "k8s" not in enabled or "/kubepods" not in parent + "/" or not parent_base.startswith("kubepods") \
                and parent_base not in ("burstable", "besteffort"):
            return None
        return (POD, value.replace("_", "-"), None)
    in_pod = _KUBE_POD.match(parent_base) is not None and "/kubepods" in parent
    if kind == "hex":
        if in_pod:
            runtime = "k8s"                        # kubelet cgroupfs driver: runtime not in the path
        elif parent_base == "docker":
            runtime = "docker"                     # cgroupfs driver, also under --cgroup-parent .../docker
        elif known is not None:
            runtime = known(value)                 # under any other parent: the runtime whose state has it
            if runtime is None:
                return None
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
    if in_pod:
        kind = "k8s"                               # kubelet systemd driver: cri-containerd-, crio-, docker-
    return (kind, value, None) if kind in enabled else None


class Matcher(object):
    """Decides which cgroup paths are containers."""

    def __init__(self, match=(), ignore=(), runtimes=RUNTIMES, known=None):
        self.match = list(match)      # [(compiled regex, runtime label)]
        self.ignore = list(ignore)    # [compiled regex]
        self.runtimes = frozenset(runtimes)
        self.known = known            # runtimes.known_ids.KnownIds, or None
        self._known_of = known.runtime_of if known is not None else None

    def begin_pass(self):
        if self.known is not None:
            self.known.begin_pass()

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
            decision = builtin_decision(parent, basename, self.runtimes, self._known_of)
        if decision is not None and any(r.search(path) for r in self.ignore):
            return IGNORED
        return decision

    def container_path(self, path):
        """The container cgroup that ``path`` (from /proc/<pid>/cgroup) lies in:
        the shallowest ancestor-or-self that is a container, as the walk sees it (a pod's container
        rather than the pod)."""
        parts = path.rstrip("/").split("/")
        pod = None
        for i in range(2, len(parts) + 1):
            candidate = "/".join(parts[:i])
            parent, base = candidate.rsplit("/", 1)
            decision = self.decide(candidate, parent, base)
            if decision is IGNORED:
                return None
            if decision is not None and decision[0] == POD:
                pod = pod or (candidate, decision)
                continue
            if decision is not None:
                return candidate, decision
        return pod


class Discovery(object):
    """Walks the hierarchies each pass.  Decisions are cached by path, metadata by container (both
    forgotten when the container is gone).

    ``names``: a runtimes.resolver.MetadataResolver; ``pods``: report each Kubernetes pod's own cgroup
    as a record of its own (its containers then leave the pod's network to it); ``warn_once``:
    ``(key, message)``, the resolver's when not given (the depth limit is logged through it).

    A container is one cgroup path (the same path in several hierarchies is one container, ``dirs``
    has a directory per mount).  Two cgroup paths with the same runtime and id (the same 64-hex id
    under two ``--cgroup-parent``s, two daemons) are two containers; which of them is keyed
    ``(runtime, id)`` and which ``(runtime, id, cgroup)`` does not depend on the order of the walk and
    never changes while a container lives: the one keyed ``(runtime, id)`` in the last pass keeps it;
    a container keyed by its path keeps that; among the others, the oldest cgroup (the lowest inode:
    cgroupfs numbers its directories in the order they are made; then the path) is keyed
    ``(runtime, id)``.

    The walk lists a directory only when it may have subdirectories: a directory whose link count is 2
    has none (cgroupfs counts one link per subdirectory, as ext4, xfs and tmpfs do; file systems that do
    not count report 1 and are listed); on cgroup v2, a directory whose ``nr_descendants`` (cgroup.stat)
    is the number of its children has only leaves, which are then not looked at one by one.  The walk
    goes :data:`MAX_DEPTH` levels below the top directories of a hierarchy, and logs once per hierarchy
    and top directory when a tree goes deeper."""

    def __init__(self, matcher, names, pods=True, warn_once=None):
        self.matcher = matcher
        self.names = names
        self.pods = pods
        self.warn_once = warn_once if warn_once is not None else getattr(names, "warn_once", None)
        self._decisions = {}
        self._last = {}             # (runtime, id) -> the container of the last pass found under it
        self._by_path = frozenset()  # the keys (runtime, id, cgroup) given in the last pass
        self._deep = set()          # (mount path, top directory) whose depth limit was logged

    def discover(self, hierarchies):
        w = _Walk()
        self.matcher.begin_pass()
        begin = getattr(self.names, "begin_pass", None)
        if begin is not None:
            begin()
        for mount in hierarchies.walk_mounts():
            self._walk(w, mount, mount.path, mount.root.rstrip("/"), 0, None)
        self._decisions = w.decisions       # the paths not seen in this pass are forgotten
        self.names.forget_except(w.seen_keys)
        records = w.records
        for pod, sandbox, first in w.pods.values():
            pod.info = sandbox or _pod_info(pod.id, first)
            pod.name = pod.info.name or pod.id
            if self.pods:
                rid = pod.key
                if rid not in w.found:
                    w.found[rid] = pod
                else:
                    w.extra[rid + (pod.cgroup,)] = pod
                records.append(pod)
        if w.extra or self._by_path:
            self._assign_keys(w.found, w.extra)
        self._last = w.found
        return records

    def _walk(self, w, mount, directory, cgroup_path, depth, pod):
        try:
            entries = os.scandir(directory)
        except OSError:
            return  # removed while walking, or unreadable: nothing below to report
        with entries:
            subdirs = [e for e in entries if e.is_dir(follow_symlinks=False)]
        # cgroup v2 counts the descendants of a cgroup: as many as its children, and none of them has any
        # (the many leaves of a busy host then cost no look at each).
        leaves = mount.version == 2 and len(subdirs) >= LEAVES_AT and _descendants(directory) == len(subdirs)
        parent = cgroup_path or "/"
        decisions = w.decisions
        cached = self._decisions
        found = w.found
        for entry in subdirs:
            base = entry.name
            path = cgroup_path + "/" + base
            decision = decisions.get(path, _UNSET)
            if decision is _UNSET:
                decision = cached.get(path, _UNSET)
                if decision is _UNSET:
                    decision = self.matcher.decide(path, parent, base)
                # A bare id that no runtime's state has may get one later (its state written after its
                # cgroup): decided again each pass, never remembered.
                if decision is not None or len(base) != 64 or _BARE_ID.match(base) is None:
                    decisions[path] = decision
            if decision is None:
                # A plain directory: list it only when it may have subdirectories (most have none).
                if leaves:
                    continue
                try:
                    if entry.stat(follow_symlinks=False).st_nlink == 2:
                        continue
                except OSError:
                    continue    # gone meanwhile
                if depth < MAX_DEPTH:
                    self._walk(w, mount, directory + "/" + base, path, depth + 1, pod)
                else:
                    self._too_deep(mount, directory + "/" + base, path)
                continue
            if decision is IGNORED:
                continue
            runtime, cid, name = decision
            here = directory + "/" + base
            if runtime == POD:
                record = w.pods.get(path)
                if record is None:
                    record = w.pods[path] = [Container(POD, cid, None, path, entry.inode(),
                                                       qos=kubernetes.qos_of(path)), None, None]
                record[0].dirs.setdefault(mount.path, here)
                if depth < MAX_DEPTH:
                    self._walk(w, mount, here, path, depth + 1, record)
                else:
                    self._too_deep(mount, here, path)
                continue
            rid = (runtime, cid)
            container = found.get(rid)
            if container is not None and container.cgroup != path:
                container = w.extra.get((runtime, cid, path))    # the same id under another parent
            if container is None:
                w.seen_keys.add(rid)
                info = self.names.lookup(runtime, cid)
                if info.sandbox:            # the pause container: its pod stands for it
                    if pod is not None:
                        pod[1] = pod[1] or info
                    continue
                if pod is not None and pod[2] is None and info.in_pod:
                    pod[2] = info
                container = Container(
                    runtime, cid, name or info.name or cid[:12], path, entry.inode(), info,
                    pod[0] if pod is not None and self.pods else None, pod[0].qos if pod is not None else None)
                if rid in found:
                    w.extra[(runtime, cid, path)] = container
                else:
                    found[rid] = container
                w.records.append(container)
            container.dirs.setdefault(mount.path, here)

    def _too_deep(self, mount, directory, path):
        """Log once per hierarchy and top directory (at most MAX_DEEP_LOGGED) that the walk stops at
        ``path``, when there is something below it."""
        top = "/" + path.split("/", 2)[1] if path.count("/") > 1 else path
        where = (mount.path, top)
        if self.warn_once is None or where in self._deep or len(self._deep) >= MAX_DEEP_LOGGED:
            return
        try:
            with os.scandir(directory) as entries:
                if not any(e.is_dir(follow_symlinks=False) for e in entries):
                    return
        except OSError:
            return
        self._deep.add(where)
        self.warn_once(("depth",) + where,
                       "%s: cgroups more than %d levels deep are not walked (first seen below %s): "
                       "a container there is not reported" % (mount.path, MAX_DEPTH + 1, path))

    def _assign_keys(self, found, extra):
        """Key the containers that share a (runtime, id) with another one (see the class docstring);
        ``found`` ends up holding the one keyed (runtime, id) where there is one."""
        last, by_path = self._last, self._by_path
        given = set()
        groups = {}
        for key, c in extra.items():
            groups.setdefault(key[:2], []).append(c)
        for key in by_path:     # alone now, but keyed by its path while it lives
            rid = key[:2]
            c = found.get(rid)
            if c is not None and rid not in groups and c.cgroup == key[2]:
                c.key = key
                given.add(key)
        for rid, others in groups.items():
            members = [found[rid]] + others
            primary = None
            before = last.get(rid)
            if before is not None and before.key == rid:
                for c in members:
                    if c.cgroup == before.cgroup:
                        primary = c
                        break
            if primary is None:
                fresh = [c for c in members if rid + (c.cgroup,) not in by_path]
                if fresh:
                    primary = min(fresh, key=_age)
            for c in members:
                if c is not primary:
                    c.key = rid + (c.cgroup,)
                    given.add(c.key)
            if primary is not None:
                found[rid] = primary
        self._by_path = given


class _Walk(object):
    """What one pass of Discovery.discover gathers."""

    __slots__ = ("decisions", "found", "extra", "pods", "records", "seen_keys")

    def __init__(self):
        self.decisions = {}     # cgroup path -> decision, for every directory seen
        self.found = {}         # (runtime, id) -> the first container found with them
        self.extra = {}         # (runtime, id, cgroup) -> another container with the same (runtime, id)
        self.pods = {}          # cgroup path -> [pod record, sandbox's metadata, a member's metadata]
        self.records = []       # containers in the order found
        self.seen_keys = set()  # (runtime, id) of every container looked up


def _age(c):
    return (c.inode is None, c.inode or 0, c.cgroup)


def _descendants(directory):
    """``nr_descendants`` of a cgroup v2 directory's cgroup.stat; None when it cannot be read."""
    try:
        data = fs.read_bytes(directory + "/cgroup.stat", 4096)
    except OSError:
        return None
    for line in data.split(b"\n"):
        if line.startswith(b"nr_descendants "):
            try:
                return int(line[15:])
            except ValueError:
                return None
    return None


def _pod_info(uid, member):
    """A pod's metadata from one of its containers' (its sandbox's not known)."""
    if member is None:
        return Metadata(pod_uid=uid)
    return kubernetes.sandbox(member.namespace, member.pod, member.pod_uid or uid)


def compile_patterns(patterns, option):
    """Compile user regexes; a bad one fails naming the option."""
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p))
        except re.error as e:
            raise ValueError("%s: invalid regular expression %r: %s" % (option, p, e))
    return out


DELETED = " (deleted)"


def cgroups_of_pid(pid, root="/"):
    """Cgroup paths of a process, from /proc/<pid>/cgroup.  The kernel ends a cgroup2 path with
    " (deleted)" once that cgroup is removed (an exiting process's): the path is given without it."""
    text = fs.read_text(HostRoot(root).proc(pid, "cgroup"))
    paths = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        path = parts[2][:-len(DELETED)] if parts[2].endswith(DELETED) else parts[2]
        if path not in paths:
            paths.append(path)
    return paths


# -- containers' PIDs -------------------------------------------------------------------------------------------

MAX_WALK = 64


def first_pid(container_dirs):
    """The first PID listed in ``cgroup.procs`` of the container's directories (a dict's values or any
    iterable of paths), looking below a directory whose own list is empty (processes may live in
    sub-cgroups only: nspawn, nested runtimes).  None for an empty container; fs.Gone when it vanished.
    Only the head of each list is read (:data:`HEAD_SIZE`), however many processes a container has."""
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


#: What first_pid reads of a ``cgroup.procs``: its head only (a container decides how many processes it
#: has; a PID line is at most 8 bytes).
HEAD_SIZE = 4096


def read_head(directory, name, size=HEAD_SIZE):
    """The first ``size`` bytes of ``directory/name`` (one read); None when this cgroup has no such file,
    Gone and other errors as fs.read_cgroup_file decides them."""
    return fs.read_cgroup_file(directory, name, head=size)


def _first_pid_below(directory, depth, visited):
    visited[0] += 1
    data = read_head(directory, "cgroup.procs")
    head = data.split(None, 1) if data else None
    if head:
        return int(head[0])
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
