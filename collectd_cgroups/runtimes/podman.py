"""podman: what its on-disk state says about a container, without its API or its database.

Files read (seen with podman 4.3.1, Debian 12; drivers overlay and vfs lay them out alike), below the
graph root ``<storage>`` (``/var/lib/containers/storage``):

* ``<storage>/<driver>-containers/containers.json`` (containers/storage): the entry whose ``id`` is the
  container's gives ``names[0]``, podman's container name, and ``metadata``, a JSON *string* whose
  ``image-name`` is the image reference (``image`` is only the image id).
* ``<storage>/<driver>-containers/<id>/userdata/config.json`` (the OCI spec podman gave the runtime;
  absent until the container is first started).  A container in a podman pod has the annotations
  ``io.kubernetes.cri-o.ContainerType: container`` and ``io.kubernetes.cri-o.SandboxID: <infra id>``; the
  pod's infra container has neither, is named ``<pod id[:12]>-infra`` (podman's default infra name) and,
  as every pod member, has ``linux.cgroupsPath`` ``<parent>/<pod id>/libpod-<id>`` (cgroupfs) or
  ``machine-libpod_pod_<pod id>.slice:libpod:<id>`` (systemd).  The infra's ``hostname`` is the pod's.

Not on disk anywhere else than podman's BoltDB (``<storage>/libpod/bolt_state.db``, not read here): the
container's labels (``podman run --label``; so ``labels`` stays empty), the pod's name and labels.  The
pod's *hostname* stands in for its name: podman sets it to the pod's name unless ``podman pod create
--hostname`` (or a kube YAML's ``hostname``) says otherwise.  ``pod_uid`` is the podman pod's id.  A podman
pod has no Kubernetes namespace (``podman kube play`` records none either), so ``namespace`` stays None.
The run root (``/run/containers/storage``: hostname, hosts, pid files) is not needed.
"""

import json
import os
import re

from . import Metadata, StateError, read_json, string_map, text
from .storage import STORAGE_ROOT, Entries

RUN_ROOT = "/run/containers/storage"
CRIO = "io.kubernetes.cri-o."
_ID = re.compile(r"^[0-9a-f]{64}$")
_INFRA_NAME = re.compile(r"^([0-9a-f]{12})-infra$")
_POD_CGROUP = re.compile(r"(?:^|/|libpod_pod_)([0-9a-f]{64})(?:\.slice)?[/:]libpod")


def read(root, cid, storage_root=STORAGE_ROOT, run_root=RUN_ROOT, entries=None):
    """Metadata of podman container ``cid`` (None: containers/storage has no such container yet).
    ``entries``: a storage.Entries that keeps each store's containers.json parsed between lookups."""
    if not _ID.match(cid):
        return None
    store = _store_of(root.join(storage_root), cid)
    if store is None:
        return None
    entries = (entries or Entries())(store)
    entry = entries.get(cid)
    if entry is None:
        return None
    meta = Metadata(name=_name(entry), image=_image(entry))
    config = _config(store, cid)
    if config is None:
        return meta
    found = string_map(config.get("annotations"), limit=4096, count=1024)
    if found.get(CRIO + "ContainerType") == "container":         # a member of a pod
        infra = text(found.get(CRIO + "SandboxID"), 128)
        if infra and _ID.match(infra):
            pod_id = _pod_id(config, _name(entries.get(infra, {})))
            if pod_id:
                infra_config = _config(store, infra) or {}
                meta.pod, meta.pod_uid = text(infra_config.get("hostname")), pod_id
    elif CRIO + "ContainerType" not in found:                     # the pod's infra container?
        pod_id = _pod_id(config, meta.name)
        if pod_id:
            meta.pod, meta.pod_uid, meta.sandbox = text(config.get("hostname")), pod_id, True
    return meta


def state_file(root, cid, storage_root=STORAGE_ROOT):
    """The containers.json that names podman container ``cid`` (``podman rename`` rewrites it), or None."""
    store = _store_of(root.join(storage_root), cid) if _ID.match(cid) else None
    return store + "/containers.json" if store is not None else None


def _store_of(base, cid):
    """``<storage>/<driver>-containers`` holding the container's directory, else None."""
    try:
        stores = sorted(d for d in os.listdir(base) if d.endswith("-containers"))
    except OSError:
        return None
    for d in stores:
        if os.path.isdir(os.path.join(base, d, cid)):
            return os.path.join(base, d)
    return None


def _name(entry):
    names = entry.get("names")
    return text(names[0]) if isinstance(names, list) and names else None


def _image(entry):
    try:
        metadata = json.loads(entry["metadata"]) if isinstance(entry.get("metadata"), str) else None
    except ValueError:
        return None
    return text(metadata.get("image-name")) if isinstance(metadata, dict) else None


def _config(store, cid):
    path = "%s/%s/userdata/config.json" % (store, cid)
    doc = read_json(path)
    if doc is not None and not isinstance(doc, dict):
        raise StateError("%s: not a JSON object" % path)
    return doc


def _pod_id(config, infra_name):
    """The pod id in ``linux.cgroupsPath`` when the infra's name (``<pod id[:12]>-infra``) agrees."""
    m = _INFRA_NAME.match(infra_name or "")
    linux = config.get("linux") if isinstance(config.get("linux"), dict) else {}
    found = _POD_CGROUP.search(text(linux.get("cgroupsPath"), 4096) or "")
    if m and found and found.group(1).startswith(m.group(1)):
        return found.group(1)
    return None
