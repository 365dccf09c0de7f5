"""Which runtime knows a 64-hex id, for a cgroup named by the bare id under a parent of no known layout
(``docker run --cgroup-parent /somewhere``: ``/somewhere/<id>``; containerd clients alike).

An index of the ids in the runtimes' state directories: Docker's ``<DockerDataRoot>/containers/<id>/``,
containerd's task bundles ``<state>/io.containerd.runtime.v2.task/<namespace>/<id>/`` (podman and CRI-O
name their cgroups ``libpod-<id>`` / ``crio-<id>`` under any parent: no index needed).  A directory is
listed again only when its mtime changed (a container made or removed), and looked at once per pass at
most, only in a pass that asks: a host without such cgroups pays nothing.
"""

import os

from .oci import TASKS

_DOCKER, _CONTAINERD = "docker", "containerd"


class KnownIds(object):

    def __init__(self, root, docker_root, containerd_states):
        self.sources = [(_DOCKER, root.join(docker_root) + "/containers")]
        self.task_dirs = [root.join(s) + "/" + TASKS for s in containerd_states]
        self._listed = {}       # directory -> (mtime_ns, frozenset of names)
        self._index = {}        # id -> runtime
        self._fresh = False     # looked at in this pass

    def begin_pass(self):
        self._fresh = False

    def runtime_of(self, cid):
        """The runtime whose state has ``cid``, or None."""
        if not self._fresh:
            self._fresh = True
            self._refresh()
        return self._index.get(cid)

    def _refresh(self):
        dirs = list(self.sources)
        for tasks in self.task_dirs:
            for ns in sorted(self._names(tasks, ids=False)):
                dirs.append((_CONTAINERD, tasks + "/" + ns))
        index = {}
        for runtime, directory in reversed(dirs):       # the first source wins (Docker before its containerd)
            for name in self._names(directory):
                index[name] = runtime
        self._index = index
        live = set(d for _, d in dirs) | set(self.task_dirs)
        for d in [d for d in self._listed if d not in live]:
            del self._listed[d]

    def _names(self, directory, ids=True):
        """The entries of ``directory`` (with ``ids``, those that can be 64-hex ids), listed again only when
        its mtime changed; () when it is not there."""
        try:
            mtime = os.stat(directory).st_mtime_ns
        except OSError:
            self._listed.pop(directory, None)
            return ()
        cached = self._listed.get(directory)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        try:
            names = frozenset(n for n in os.listdir(directory) if len(n) == 64 or not ids)
        except OSError:
            names = frozenset()
        self._listed[directory] = (mtime, names)
        return names
