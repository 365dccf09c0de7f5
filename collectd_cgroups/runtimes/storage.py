"""containers/storage (podman, CRI-O, buildah): ``<ContainersStorage>/<driver>-containers/containers.json``,
one JSON list of every container of the store, each with its ``id`` and ``names``.  The file is re-read
only when a store's file changes (its mtime), so a lookup costs a few stat() calls.
"""

import os

from . import StateError, read_json, text

STORAGE_ROOT = "/var/lib/containers/storage"

# A store lists every container of the host: bound it, not by the few KiB of one container's file.
MAX_CONTAINERS_JSON = 64 << 20


class Entries(object):
    """The entries of containers.json files, by store: ``{id: entry}``, parsed again only when the file
    changes (its mtime and size), so that looking up many containers costs one parse, not one each."""

    def __init__(self):
        self._parsed = {}       # path -> ((mtime, size), {id: entry})

    def __call__(self, store):
        path = store + "/containers.json"
        try:
            st = os.stat(path)
        except OSError:
            self._parsed.pop(path, None)
            return {}
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._parsed.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        doc = read_json(path, MAX_CONTAINERS_JSON)
        if doc is not None and not isinstance(doc, list):
            raise StateError("%s: not a JSON list" % path)
        entries = dict((e["id"], e) for e in doc or () if isinstance(e, dict) and isinstance(e.get("id"), str))
        if len(self._parsed) > 16:      # stores are few; bound it anyway
            self._parsed.clear()
        self._parsed[path] = (stamp, entries)
        return entries


class StorageNames(object):
    """Container id -> first name, for every store under ``storage_root``."""

    def __init__(self, root, storage_root=STORAGE_ROOT, warn_once=None):
        self.root = root
        self.storage_root = storage_root
        self.warn_once = warn_once
        self._names = {}
        self._mtimes = None

    def name(self, cid):
        self._refresh()
        return self._names.get(cid)

    def _files(self):
        base = self.root.join(self.storage_root)
        try:
            return [os.path.join(base, d, "containers.json") for d in sorted(os.listdir(base))
                    if d.endswith("-containers")]
        except OSError:
            return []

    def _refresh(self):
        files = self._files()
        mtimes = []
        for path in files:
            try:
                mtimes.append(os.stat(path).st_mtime_ns)
            except OSError:
                mtimes.append(None)
        if mtimes == self._mtimes:
            return
        self._mtimes = mtimes
        self._names = {}
        for path in files:
            try:
                entries = read_json(path, MAX_CONTAINERS_JSON)
            except StateError as e:
                if self.warn_once is not None:
                    self.warn_once((path, "storage"), "container names: %s" % e)
                continue
            for entry in entries if isinstance(entries, list) else ():
                if isinstance(entry, dict) and isinstance(entry.get("names"), list) and entry["names"]:
                    cid, name = text(entry.get("id"), 128), text(entry["names"][0])
                    if cid and name:
                        self._names[cid] = name
