"""OCI runtime bundles: the ``config.json`` a CRI runtime writes for each container, whose annotations
say which pod it belongs to.

containerd (its CRI plugin, namespace ``k8s.io``; Docker 20.10+'s containerd, namespace ``moby``):
``<state>/io.containerd.runtime.v2.task/<namespace>/<id>/config.json``, for each containerd state
directory (``/run/containerd``, and dockerd's private ``/run/docker/containerd/daemon``).  Annotations
``io.kubernetes.cri.container-type`` (``sandbox`` / ``container``), ``.container-name``, ``.sandbox-name``,
``.sandbox-namespace``, ``.sandbox-uid``, ``.image-name``.  containerd keeps CRI *labels* in its own
database (meta.db, BoltDB), not here: the labels a containerd container gets are its OCI annotations
other than ``io.kubernetes.cri.*``.

CRI-O: ``<run root>/overlay-containers/<id>/userdata/config.json`` (also under the storage root).
Annotations ``io.kubernetes.cri-o.ContainerType``, ``io.kubernetes.pod.name`` / ``.namespace`` / ``.uid``,
``io.kubernetes.container.name``, ``io.kubernetes.cri-o.Labels`` (the CRI labels, a JSON string; a sandbox's
are the pod's labels), ``io.kubernetes.cri-o.ImageName``, and ``io.kubernetes.cri-o.Name`` (the
``k8s_...`` name) to fall back on.
"""

import json
import os

from . import Metadata, StateError, kubernetes, read_json, string_map, text

CONTAINERD_STATES = ("/run/containerd", "/run/docker/containerd/daemon")
RUN_ROOT = "/run/containers/storage"
TASKS = "io.containerd.runtime.v2.task"
CRI = "io.kubernetes.cri."


def annotations(path):
    """The annotations of the OCI config.json at ``path`` (None: no such file)."""
    doc = read_json(path)
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise StateError("%s: not a JSON object" % path)
    found = doc.get("annotations")
    if found is None:
        return {}
    if not isinstance(found, dict):
        raise StateError("%s: annotations are not an object" % path)
    return string_map(found, limit=4096, count=1024)


class ContainerdBundles(object):
    """Finds a container's bundle in containerd's state directories, whatever its namespace."""

    def __init__(self, root, states=CONTAINERD_STATES):
        self.root = root
        self.states = [root.join(s) + "/" + TASKS for s in states]

    def read(self, cid):
        for tasks in self.states:
            try:
                namespaces = os.listdir(tasks)
            except OSError:
                continue
            for ns in namespaces:
                found = annotations("%s/%s/%s/config.json" % (tasks, ns, cid))
                if found is not None:
                    return from_containerd(found)
        return None


def from_containerd(found):
    """Metadata from containerd's annotations; a container of no CRI pod has no name here."""
    labels = string_map(dict((k, v) for k, v in found.items() if not k.startswith(CRI)))
    kind = found.get(CRI + "container-type")
    namespace, pod = text(found.get(CRI + "sandbox-namespace")), text(found.get(CRI + "sandbox-name"))
    uid = text(found.get(CRI + "sandbox-uid"))
    if namespace and pod:
        if kind == "sandbox":
            return kubernetes.sandbox(namespace, pod, uid, labels=labels)
        container = text(found.get(CRI + "container-name"))
        if container:
            return kubernetes.pod_container(namespace, pod, container, uid, text(found.get(CRI + "image-name")),
                                            labels)
    return Metadata(image=text(found.get(CRI + "image-name")), labels=labels)


def read_crio(root, cid, run_root=RUN_ROOT, storage_root=None):
    """Metadata of CRI-O container ``cid`` from its config.json (None: none found)."""
    for base in (run_root, storage_root):
        if base:
            found = annotations(root.join("%s/overlay-containers/%s/userdata/config.json" % (base, cid)))
            if found is not None:
                return from_crio(found)
    return None


def from_crio(found):
    labels = {}
    encoded = found.get("io.kubernetes.cri-o.Labels")
    if encoded:
        try:
            labels = string_map(json.loads(encoded))
        except ValueError:
            labels = {}
    def first(*keys):
        for key in keys:
            value = text(found.get(key)) or text(labels.get(key))
            if value:
                return value
        return None
    namespace = first("io.kubernetes.pod.namespace", "io.kubernetes.cri-o.Namespace")
    pod = first("io.kubernetes.pod.name", "io.kubernetes.cri-o.KubeName")
    uid = first("io.kubernetes.pod.uid")
    image = first("io.kubernetes.cri-o.ImageName", "io.kubernetes.cri-o.Image")
    if found.get("io.kubernetes.cri-o.ContainerType") == "sandbox":
        if namespace and pod:
            return kubernetes.sandbox(namespace, pod, uid, labels=labels)
    else:
        container = first("io.kubernetes.container.name")
        if namespace and pod and container:
            return kubernetes.pod_container(namespace, pod, container, uid, image, labels)
    named = kubernetes.from_name(first("io.kubernetes.cri-o.Name") or "")
    if named is not None:
        named.image = None if named.sandbox else image
        named.labels = labels
        return named
    return Metadata(image=image, labels=labels)
