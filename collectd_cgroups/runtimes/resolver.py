"""Metadata for each discovered container, from the runtime that made it: read once per container id
(cached, forgotten when the container goes, bounded), never per pass.

Which state is read depends on the runtime the cgroup path names:

========== ==========================================================================
docker     config.v2.json (docker)
podman     podman's state (podman), else containers/storage's names (storage)
crio       CRI-O's config.json (oci), else containers/storage's ``k8s_...`` names
containerd containerd's bundles (oci)
k8s        (the kubelet's cgroupfs driver: the runtime is not in the path) containerd,
           then CRI-O, then Docker (dockershim), then containers/storage
========== ==========================================================================

Nothing found yet (the runtime may not have written it when the cgroup appears) is retried after
``retry`` seconds; a state file that cannot be used is logged once and treated as not found.

Names can change while a container lives (``docker rename``, ``podman rename``): the state file that
holds a Docker or podman container's name (config.v2.json; the store's containers.json) is looked at
(its mtime and size) when inotify says its directory had a file written or renamed into it since the
last pass (:mod:`runtimes.watch`; nothing per container otherwise), or every ``recheck`` look-ups of the
container (one per pass) where inotify cannot watch it, and read again when it changed.  Kubernetes
names are fixed for a container's life: nothing to look at.
"""

import collections
import os
import time

from . import Metadata, StateError, docker, kubernetes, oci, podman, storage, watch

NOTHING = Metadata()
MAX_CACHED = 65536
RECHECK = 2         # passes between two looks at a name's state file that inotify cannot watch


def _stamp(path):
    """(mtime, size) of ``path``, or None when it cannot be looked at."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class MetadataResolver(object):

    def __init__(self, root, docker_root=docker.DOCKER_ROOT, storage_root=storage.STORAGE_ROOT,
                 run_root=oci.RUN_ROOT, containerd_states=oci.CONTAINERD_STATES, retry=30.0,
                 clock=time.monotonic, warn_once=None, recheck=RECHECK):
        self.root = root
        self.docker_root = docker_root
        self.storage_root = storage_root
        self.run_root = run_root
        self.retry = retry
        self.recheck = recheck
        self.clock = clock
        self.warn_once = warn_once
        self.bundles = oci.ContainerdBundles(root, containerd_states)
        self.storage = storage.StorageNames(root, storage_root, warn_once)
        self.entries = storage.Entries()
        # (runtime, id) -> [Metadata, retry at or None, the name's state file or None, its stamp,
        #                   look-ups before the next look at it, its watched directory or None]
        self._cache = collections.OrderedDict()
        self.watch = watch.StateWatch()
        self._changed = ()          # watched directories that changed before this pass

    def begin_pass(self):
        """Called before a pass's look-ups: which watched directories changed since the last pass."""
        self._changed = self.watch.changed() if self.watch.dirs else ()

    def lookup(self, runtime, cid):
        """The Metadata of a container (NOTHING when none is known: the short id names it)."""
        key = (runtime, cid)
        entry = self._cache.get(key)
        known = None
        if entry is not None:
            if entry[1] is not None:            # nothing known yet: read again when due
                if self.clock() < entry[1]:
                    return entry[0]
            elif entry[2] is None:              # a name that cannot change
                return entry[0]
            else:
                if entry[5] is not None:        # watched: looked at only when its directory changed
                    if entry[5] not in self._changed:
                        return entry[0]
                else:
                    entry[4] -= 1
                    if entry[4] > 0:
                        return entry[0]
                    entry[4] = self.recheck
                stamp = _stamp(entry[2])
                if stamp == entry[3] or stamp is None:     # unchanged, or gone with its container
                    return entry[0]
                known = entry
        state = self._state_file(runtime, cid)
        stamp = _stamp(state) if state is not None else None
        meta = self._read_logged(key)
        if meta is not None and (meta.name or meta.in_pod):
            watched = None
            if known is not None:
                watched = known[5]              # the same file: its watch goes on serving
            elif state is not None and self.watch.watch(os.path.dirname(state)):
                watched = os.path.dirname(state)
            self._cache[key] = [meta, None, state, stamp, self.recheck, watched]
        elif known is not None:                 # changed into something unusable: keep what it was
            known[3] = stamp
            return known[0]
        else:
            meta = meta or NOTHING
            self._cache[key] = [meta, self.clock() + self.retry, None, None, None, None]
        if len(self._cache) > MAX_CACHED:
            self._drop(self._cache.popitem(last=False)[1])
        return meta

    def close(self):
        """Let go of the inotify watches (the names are then looked at every ``recheck`` passes)."""
        for entry in self._cache.values():
            entry[5] = None
        self.watch.close()

    def _drop(self, entry):
        if entry[5] is not None:
            self.watch.unwatch(entry[5])

    def _read_logged(self, key):
        """The Metadata the runtime's state gives (None: none, or unusable, logged once)."""
        runtime, cid = key
        try:
            return self._read(runtime, cid)
        except StateError as e:
            if self.warn_once is not None:
                self.warn_once((key, "state"), "%s %s: %s; named by its short id" % (runtime, cid[:12], e))
        except (OSError, ValueError, TypeError, AttributeError) as e:    # a state we did not foresee
            if self.warn_once is not None:
                self.warn_once((key, "state"), "%s %s: runtime state unusable: %r" % (runtime, cid[:12], e))
        return None

    def forget_except(self, keys):
        """Forget the containers not in ``keys`` (every container key seen in this pass)."""
        if len(self._cache) > len(keys):
            for key in [k for k in self._cache if k not in keys]:
                self._drop(self._cache.pop(key))

    def _read(self, runtime, cid):
        if runtime == "docker":
            return docker.read(self.root, cid, self.docker_root)
        if runtime == "podman":
            return podman.read(self.root, cid, self.storage_root, self.run_root, self.entries) or self._stored(cid)
        if runtime == "crio":
            return oci.read_crio(self.root, cid, self.run_root, self.storage_root) or self._stored(cid)
        if runtime == "containerd":
            return self.bundles.read(cid)
        if runtime == "k8s":
            return (self.bundles.read(cid) or oci.read_crio(self.root, cid, self.run_root, self.storage_root)
                    or docker.read(self.root, cid, self.docker_root) or self._stored(cid))
        return None

    def _state_file(self, runtime, cid):
        """The file that holds the name of a container whose name can change, or None."""
        if runtime == "docker":
            return docker.state_file(self.root, cid, self.docker_root)
        if runtime == "podman":
            return podman.state_file(self.root, cid, self.storage_root)
        return None

    def _stored(self, cid):
        name = self.storage.name(cid)
        if not name:
            return None
        return kubernetes.from_name(name) or Metadata(name=name)
