"""Docker: ``<DockerDataRoot>/containers/<id>/config.v2.json`` (written by dockerd at create).

Gives ``Name`` (with Docker's leading '/'), ``Config.Image`` (the reference the container was created
from) and ``Config.Labels`` (compose users get ``com.docker.compose.project`` / ``.service``).  A
container that dockershim (or cri-dockerd) created for the kubelet is named
``k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`` and labelled ``io.kubernetes.*``: it gets its pod
identity from those (kubernetes.from_name), its sandbox ("POD") flagged.
"""

from . import Metadata, StateError, kubernetes, read_json, string_map, text

DOCKER_ROOT = "/var/lib/docker"


def state_file(root, cid, docker_root=DOCKER_ROOT):
    """config.v2.json of container ``cid`` (dockerd writes it anew at create, rename, start, stop)."""
    return root.join("%s/containers/%s/config.v2.json" % (docker_root, cid))


def read(root, cid, docker_root=DOCKER_ROOT):
    """Metadata of Docker container ``cid`` (None: no config.v2.json)."""
    path = state_file(root, cid, docker_root)
    doc = read_json(path)
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise StateError("%s: not a JSON object" % path)
    config = doc.get("Config") if isinstance(doc.get("Config"), dict) else {}
    name = text(doc.get("Name"))
    name = name.strip("/") if name else None
    meta = Metadata(name=name or None, image=text(config.get("Image")), labels=string_map(config.get("Labels")))
    pod = kubernetes.from_name(meta.name) if meta.name else None
    if pod is not None:
        pod.image, pod.labels = meta.image, meta.labels
        return pod
    return meta
