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
_KUBE_POD = re.compile(r"^pod[0-9a-f_-]+$|^kubepods-.*pod[0-9a-f_]+\.slice$")
_SYSTEMD_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")

RUNTIMES = ("docker", "podman", "lxc", "k8s", "containerd", "crio", "nspawn")
POD = "k8spod"              # the runtime label of a Kubernetes pod's own cgroup

IGNORED = "ignored"          # a decision: matched, but the user ignores it
MAX_DEPTH = 16               # guard against pathological trees
NOTHING = Metadata()


class Container(object):
    """One container: where its cgroups are and what to call it.

    ``info``: what its runtime keeps on disk (runtimes.Metadata); ``pod``: the record of the Kubernetes
    pod it belongs to, when pods are reported (the pod's network is reported there, not here);
    ``qos``: the pod's QoS class."""

    __slots__ = ("runtime", "id", "name", "cgroup", "dirs", "inode", "info", "pod", "qos")

    def __init__(self, runtime, cid, name, cgroup, inode=None, info=NOTHING, pod=None, qos=None):
        self.runtime = runtime
        self.id = cid
        self.name = name
        self.cgroup = cgroup      # cgroup path as in /proc/<pid>/cgroup
        self.dirs = {}            # mount path -> this container's directory in that mount
        self.inode = inode        # of the first directory found: a re-created cgroup gets a new one
        self.info = info
        self.pod = pod
        self.qos = qos

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


def builtin_decision(parent, basename, enabled):
    """(runtime, id, name or None) when ``parent/basename`` is a container
    cgroup in a layout we know, else None.  A Kubernetes pod's own cgroup is (POD, uid, None) when
    "k8s" is enabled; its containers are runtime "k8s" whatever runtime and cgroup driver made them."""
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
            runtime = "docker"                     # cgroupfs driver, also under --cgroup-parent
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
    as a record of its own (its containers then leave the pod's network to it)."""

    def __init__(self, matcher, names, pods=True):
        self.matcher = matcher
        self.names = names
        self.pods = pods
        self._decisions = {}

    def discover(self, hierarchies):
        found = {}
        pods = {}
        seen_keys = set()
        decisions = self._decisions
        seen_paths = set()
        for mount in hierarchies.walk_mounts():
            root = mount.root.rstrip("/")
            self._walk(mount, mount.path, root, 0, found, pods, None, decisions, seen_paths, seen_keys)
        for path in list(decisions):
            if path not in seen_paths:
                del decisions[path]
        self.names.forget_except(seen_keys)
        for pod, sandbox, first in pods.values():
            pod.info = sandbox or _pod_info(pod.id, first)
            pod.name = pod.info.name or pod.id
            if self.pods:
                found[pod.key] = pod
        return list(found.values())

    def _walk(self, mount, directory, cgroup_path, depth, found, pods, pod, decisions, seen_paths, seen_keys):
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
                    self._walk(mount, directory + "/" + base, path, depth + 1, found, pods, pod,
                               decisions, seen_paths, seen_keys)
                continue
            if decision is IGNORED:
                continue
            runtime, cid, name = decision
            if runtime == POD:
                entry = pods.get(cid)
                if entry is None:
                    entry = pods[cid] = [Container(POD, cid, None, path, inode, qos=kubernetes.qos_of(path)),
                                         None, None]
                entry[0].dirs.setdefault(mount.path, directory + "/" + base)
                if depth < MAX_DEPTH:
                    self._walk(mount, directory + "/" + base, path, depth + 1, found, pods, entry,
                               decisions, seen_paths, seen_keys)
                continue
            key = (runtime, cid)
            container = found.get(key)
            if container is None:
                seen_keys.add(key)
                info = self.names.lookup(runtime, cid)
                if info.sandbox:            # the pause container: its pod stands for it
                    if pod is not None:
                        pod[1] = pod[1] or info
                    continue
                if pod is not None and pod[2] is None and info.in_pod:
                    pod[2] = info
                container = found[key] = Container(
                    runtime, cid, name or info.name or cid[:12], path, inode, info,
                    pod[0] if pod is not None and self.pods else None, pod[0].qos if pod is not None else None)
            container.dirs.setdefault(mount.path, directory + "/" + base)


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
