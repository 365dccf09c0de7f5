"""Kubernetes identity as the runtimes record it: the names CRI-O and dockershim give containers, the
QoS class and pod UID in the kubelet's cgroup paths, and the identifier a pod container is given.

A pod container's ``Metadata.name`` is ``<namespace>_<pod>_<container>`` (a pod's: ``<namespace>_<pod>``):
'_' cannot occur in any of the three (they are DNS labels / subdomains), so the name reads back
unambiguously.  The restart attempt is left out: a container restarted in its pod keeps its name.
"""

import re

from . import Metadata

# k8s_<container>_<pod>_<namespace>_<uid>_<attempt> (CRI-O's containers/storage names, dockershim's Docker
# names); the sandbox is k8s_POD_<pod>_<namespace>_<uid>_<attempt>.
_K8S_NAME = re.compile(r"^k8s_(?P<container>[^_]+)_(?P<pod>[^_]+)_(?P<namespace>[^_]+)_(?P<uid>[^_]+)_\d+$")

QOS_CLASSES = ("guaranteed", "burstable", "besteffort")


def pod_container(namespace, pod, container, uid=None, image=None, labels=None):
    return Metadata(name="%s_%s_%s" % (namespace, pod, container), namespace=namespace, pod=pod,
                    container=container, pod_uid=uid, image=image, labels=labels)


def sandbox(namespace, pod, uid=None, labels=None):
    return Metadata(name="%s_%s" % (namespace, pod), namespace=namespace, pod=pod, pod_uid=uid,
                    sandbox=True, labels=labels)


def from_name(name):
    """Pod metadata from a ``k8s_...`` runtime name, else None."""
    m = _K8S_NAME.match(name)
    if m is None:
        return None
    if m.group("container") == "POD":
        return sandbox(m.group("namespace"), m.group("pod"), m.group("uid"))
    return pod_container(m.group("namespace"), m.group("pod"), m.group("container"), m.group("uid"))


def qos_of(path):
    """The QoS class of a pod cgroup path (cgroupfs ``.../kubepods/<qos>/pod<uid>``, systemd
    ``.../kubepods-<qos>.slice/kubepods-<qos>-pod<uid>.slice``); a pod directly below kubepods is
    Guaranteed."""
    parent = path.rsplit("/", 2)[-2] if path.count("/") >= 2 else ""
    if parent in ("burstable", "besteffort", "kubepods-burstable.slice", "kubepods-besteffort.slice"):
        return parent.replace("kubepods-", "").replace(".slice", "")
    return "guaranteed"
