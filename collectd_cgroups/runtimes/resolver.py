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
"""

import collections
import time

from . import Metadata, StateError, docker, kubernetes, oci, podman, storage

NOTHING = Metadata()
MAX_CACHED = 65536


class MetadataResolver(object):

    def __init__(self, root, docker_root=docker.DOCKER_ROOT, storage_root=storage.STORAGE_ROOT,
                 run_root=oci.RUN_ROOT, containerd_states=oci.CONTAINERD_STATES, retry=30.0,
                 clock=time.monotonic, warn_once=None):
        self.root = root
        self.docker_root = docker_root
        self.storage_root = storage_root
        self.run_root = run_root
        self.retry = retry
        self.clock = clock
        self.warn_once = warn_once
        self.bundles = oci.ContainerdBundles(root, containerd_states)
        self.storage = storage.StorageNames(root, storage_root, warn_once)
        self.entries = storage.Entries()
        self._cache = collections.OrderedDict()     # (runtime, id) -> (Metadata, retry at or None)

    def lookup(self, runtime, cid):
        """The Metadata of a container (NOTHING when none is known: the short id names it)."""
        key = (runtime, cid)
        entry = self._cache.get(key)
        if entry is not None and (entry[1] is None or self.clock() < entry[1]):
            return entry[0]
        meta = None
        try:
            meta = self._read(runtime, cid)
        except StateError as e:
            if self.warn_once is not None:
                self.warn_once((key, "state"), "%s %s: %s; named by its short id" % (runtime, cid[:12], e))
        except (OSError, ValueError, TypeError, AttributeError) as e:    # a state we did not foresee
            if self.warn_once is not None:
                self.warn_once((key, "state"), "%s %s: runtime state unusable: %r" % (runtime, cid[:12], e))
        if meta is not None and (meta.name or meta.in_pod):
            self._cache[key] = (meta, None)
        else:
            meta = meta or NOTHING
            self._cache[key] = (meta, self.clock() + self.retry)
        if len(self._cache) > MAX_CACHED:
            self._cache.popitem(last=False)
        return meta

    def forget_except(self, keys):
        """Forget the containers not in ``keys`` (every container key seen in this pass)."""
        if len(self._cache) > len(keys):
            for key in [k for k in self._cache if k not in keys]:
                del self._cache[key]

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

    def _stored(self, cid):
        name = self.storage.name(cid)
        if not name:
            return None
        return kubernetes.from_name(name) or Metadata(name=name)
