"""Where the runtimes keep their state, from the daemons' own configuration files under ``HostRoot``,
for the options not set (``DockerDataRoot``, ``ContainersStorage``, ``ContainersRunRoot``):

* Docker: ``/etc/docker/daemon.json`` ``data-root`` (``graph`` before Docker 17.05), else
  ``/var/lib/docker``;
* podman, CRI-O, buildah (containers/storage): ``/etc/containers/storage.conf`` (else the packaged
  ``/usr/share/containers/storage.conf``) ``[storage] graphroot`` and ``runroot``, else
  ``/var/lib/containers/storage`` and ``/run/containers/storage``.

Read once, when the collector starts (a daemon reads them at its own start too).  A file that is not
there gives the default; one that cannot be used gives the default and a reason.
"""

import json

try:
    import tomllib                  # Python 3.11+
except ImportError:                 # older: storage.conf is not read (the defaults, and a reason)
    tomllib = None

from . import docker, oci, storage

DAEMON_JSON = "/etc/docker/daemon.json"
STORAGE_CONFS = ("/etc/containers/storage.conf", "/usr/share/containers/storage.conf")
MAX_SIZE = 1 << 20


class Roots(object):
    """The three roots and where each came from (``sources``: option -> text for the log)."""

    def __init__(self):
        self.docker_root = docker.DOCKER_ROOT
        self.storage_root = storage.STORAGE_ROOT
        self.run_root = oci.RUN_ROOT
        self.sources = {}
        self.problems = []      # files that could not be used, with why


def _read(root, path, problems):
    """Text of ``<root><path>``, None when it is not there (or unreadable: in ``problems``)."""
    try:
        with open(root.join(path), "rb") as f:
            data = f.read(MAX_SIZE + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        problems.append("%s: %s" % (path, e.strerror))
        return None
    if len(data) > MAX_SIZE:
        problems.append("%s: larger than %d bytes, not read" % (path, MAX_SIZE))
        return None
    return data.decode("utf-8", "replace")


def _absolute(value):
    return value.rstrip("/") or "/" if isinstance(value, str) and value.startswith("/") else None


def find(root, docker_root=None, storage_root=None, run_root=None):
    """:class:`Roots` under HostRoot ``root``: the given ones (the options) win."""
    roots = Roots()
    problems = roots.problems
    if docker_root is not None:
        roots.docker_root, roots.sources["DockerDataRoot"] = docker_root, "the option"
    else:
        text = _read(root, DAEMON_JSON, problems)
        if text is not None:
            try:
                doc = json.loads(text)
            except ValueError as e:
                problems.append("%s: not JSON (%s)" % (DAEMON_JSON, e))
                doc = None
            if isinstance(doc, dict):
                for key in ("data-root", "graph"):
                    path = _absolute(doc.get(key))
                    if path is not None:
                        roots.docker_root, roots.sources["DockerDataRoot"] = path, "%s %s" % (DAEMON_JSON, key)
                        break
            elif doc is not None:
                problems.append("%s: not a JSON object" % DAEMON_JSON)
    given = {"ContainersStorage": storage_root, "ContainersRunRoot": run_root}
    for option, value in given.items():
        if value is not None:
            roots.sources[option] = "the option"
    if storage_root is not None:
        roots.storage_root = storage_root
    if run_root is not None:
        roots.run_root = run_root
    if storage_root is None or run_root is None:
        for path in STORAGE_CONFS:
            text = _read(root, path, problems)
            if text is None:
                continue
            if tomllib is None:
                problems.append("%s: not read (no TOML parser before Python 3.11)" % path)
                break
            try:
                section = tomllib.loads(text).get("storage")
            except (tomllib.TOMLDecodeError, ValueError) as e:
                problems.append("%s: not TOML (%s)" % (path, e))
                break
            if isinstance(section, dict):
                graph, run = _absolute(section.get("graphroot")), _absolute(section.get("runroot"))
                if storage_root is None and graph is not None:
                    roots.storage_root, roots.sources["ContainersStorage"] = graph, "%s graphroot" % path
                if run_root is None and run is not None:
                    roots.run_root, roots.sources["ContainersRunRoot"] = run, "%s runroot" % path
            break       # the first file there is the one the runtimes read
    return roots


def describe(roots):
    """One line for the log: each root and where it came from."""
    parts = []
    for option, path in (("DockerDataRoot", roots.docker_root), ("ContainersStorage", roots.storage_root),
                         ("ContainersRunRoot", roots.run_root)):
        parts.append("%s %s (%s)" % (option, path, roots.sources.get(option, "the default")))
    return "runtime state: " + ", ".join(parts)
