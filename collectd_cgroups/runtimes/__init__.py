"""What the container runtimes keep on disk about each container: names, pods, images, labels.

One module per on-disk format (docker: config.v2.json; storage: containers/storage's containers.json;
oci: an OCI bundle's or CRI-O's config.json annotations; podman: podman's own state), each with a
``read(...)`` that returns a :class:`Metadata` or None (nothing there yet) and raises
:class:`StateError` for a file that is there but cannot be used (unreadable, too big, malformed): the
caller logs that once and falls back to the short id.  No API calls: only files, all under HostRoot.
"""

import json
import os
import stat

# A state file larger than this is not read (a hostile or broken runtime state must not cost collectd
# its memory): real ones are a few KiB (config.v2.json, an OCI config.json) to a few hundred KiB
# (containers.json on a host with thousands of containers).
MAX_STATE_FILE = 4 << 20


class StateError(Exception):
    """A runtime state file that exists but cannot be used; the message names the file and why."""


class Metadata(object):
    """What a runtime says about one container.  Every field may be None (labels: empty dict).

    ``name``: the runtime's container name (Docker's, podman's, LXC's) or, for a Kubernetes container,
    ``<namespace>_<pod>_<container>``; ``namespace``, ``pod``, ``container``, ``pod_uid``: Kubernetes
    (or podman pod) identity; ``sandbox``: True for a pod's sandbox ("pause") container, which is not
    reported as a container of its own; ``image``: the image reference the container was created from;
    ``labels``: the runtime's labels (Docker/podman ``Config.Labels``, CRI-O's pod labels, containerd's
    OCI annotations)."""

    __slots__ = ("name", "namespace", "pod", "container", "pod_uid", "sandbox", "image", "labels")

    def __init__(self, name=None, namespace=None, pod=None, container=None, pod_uid=None, sandbox=False,
                 image=None, labels=None):
        self.name = name
        self.namespace = namespace
        self.pod = pod
        self.container = container
        self.pod_uid = pod_uid
        self.sandbox = sandbox
        self.image = image
        self.labels = labels if labels is not None else {}

    @property
    def in_pod(self):
        return self.pod is not None and self.namespace is not None

    def __eq__(self, other):
        return isinstance(other, Metadata) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self):
        return "Metadata(%s)" % ", ".join("%s=%r" % (k, getattr(self, k)) for k in self.__slots__
                                          if getattr(self, k) not in (None, False, {}))


def read_json(path, limit=MAX_STATE_FILE):
    """The JSON document in ``path``; None when there is no such file; StateError when it is unreadable,
    larger than ``limit`` bytes (not read at all) or not JSON."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise StateError("%s: cannot open: %s" % (path, e.strerror))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StateError("%s: not a regular file" % path)
        if st.st_size > limit:
            raise StateError("%s: %d bytes, larger than the %d read at most" % (path, st.st_size, limit))
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise StateError("%s: larger than the %d bytes read at most" % (path, limit))
            chunks.append(chunk)
    except OSError as e:
        raise StateError("%s: cannot read: %s" % (path, e.strerror))
    finally:
        os.close(fd)
    try:
        return json.loads(b"".join(chunks))
    except ValueError as e:      # also UnicodeDecodeError
        raise StateError("%s: not JSON: %s" % (path, e))


def text(value, limit=256):
    """A string field of a state file, or None when it is absent, not a string or empty; cut to ``limit``."""
    if isinstance(value, str) and value:
        return value[:limit]
    return None


def string_map(value, limit=256, count=256):
    """A labels / annotations object: {str: str}, other entries left out, at most ``count`` of them."""
    out = {}
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and isinstance(v, str):
                out[k[:limit]] = v[:limit]
                if len(out) >= count:
                    break
    return out
