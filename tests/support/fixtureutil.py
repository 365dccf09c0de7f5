"""Helpers for the tests over the fixture trees in tests/fixtures/.

The expected figures in those tests come from the fixture files themselves,
read here with parsers of our own (a few lines each), never through the
plugin's readers, so that a parser bug cannot hide behind itself.
"""

import contextlib
import io
import json
import os
import re
import shutil

from collectd_cgroups import __main__ as cli
from collectd_cgroups.collector import Collector, Options
from tests.support import FIXTURES

TREES = ("hybrid-debian12", "v2-pure", "v1-legacy-single", "v1-systemd-driver",
         "blkio-v1-cfq", "blkio-v1-throttle", "blkio-v1-bfq", "blkio-v2-iostat")
BLKIO_TREES = tuple(t for t in TREES if t.startswith("blkio-"))
TYPES_DB = "/usr/share/collectd/types.db"

CLK_TCK = os.sysconf("SC_CLK_TCK")
NO_LIMIT_V1 = 9223372036854771712

# A collectd name part the way the plugin promises it: no '/', no whitespace or
# control characters, at most 127 characters.
VALID_NAME = re.compile(r"^[A-Za-z0-9_.:+@=,~-]{1,127}$")


def tree(name):
    return os.path.join(FIXTURES, name)


def copy_tree(name, dest):
    """A writable copy of a fixture tree (symlinks kept as symlinks)."""
    target = os.path.join(str(dest), name)
    shutil.copytree(tree(name), target, symlinks=True)
    return target


def run_cli(args):
    """python -m collectd_cgroups ARGS, in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(list(args))
    return rc, out.getvalue(), err.getvalue()


def cli_json(root, *args):
    """The --json output for ``root`` and the stderr text."""
    rc, out, err = run_cli(["--root", root, "--json"] + list(args))
    assert rc == 0, err
    return json.loads(out), err


def values(entries):
    """{plugin_instance: {(type, type_instance): value}} from --json entries; the value
    of a type with several data sources (disk_octets: read, write) is a tuple."""
    out = {}
    for e in entries:
        key = (e["type"], e["type_instance"])
        per = out.setdefault(e["plugin_instance"], {})
        assert key not in per, "identifier dispatched twice: %s %s" % (e["plugin_instance"], key)
        assert len(e["values"]) >= 1
        per[key] = e["values"][0] if len(e["values"]) == 1 else tuple(e["values"])
    return out


def collect(root, **options):
    """Collector over ``root``: (collector, warnings list, infos list)."""
    warnings, infos = [], []
    c = Collector(Options(root=root, **options), warn=warnings.append, info=infos.append)
    return c, warnings, infos


# -- independent readers of fixture files -------------------------------------

def read(root, path):
    with open(os.path.join(root, path.lstrip("/")), "rb") as f:
        return f.read().decode()


def flat(root, path):
    """KEY VALUE lines -> {key: int}."""
    out = {}
    for line in read(root, path).splitlines():
        key, value = line.split(" ")
        out[key] = int(value)
    return out


def single(root, path):
    return read(root, path).strip()


def pressure_totals(root, path):
    """{'some': usec, 'full': usec} of a *.pressure file."""
    out = {}
    for line in read(root, path).splitlines():
        kind, rest = line.split(" ", 1)
        out[kind] = int(dict(kv.split("=") for kv in rest.split(" "))["total"])
    return out


def types_db(path=TYPES_DB):
    """collectd's types.db -> {type: [(ds name, DS TYPE, min, max)]}."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            # collectd's parser splits at blanks and commas (a few stock entries
            # have no commas: "ib_octets rx:DERIVE:0:U tx:DERIVE:0:U")
            name, rest = line.split(None, 1)
            sources = []
            for ds in re.split(r"[\s,]+", rest.strip()):
                ds_name, ds_type, lo, hi = ds.split(":")
                sources.append((ds_name, ds_type, None if lo == "U" else float(lo),
                                None if hi == "U" else float(hi)))
            out[name] = sources
    return out


# -- block I/O, read our own way ----------------------------------------------

_RWSTAT_LINE = re.compile(r"^(\d+):(\d+) (Read|Write|Sync|Async|Discard|Total) (\d+)$")
# v1 file generations in the order the plugin promises to prefer them: (prefix, extra file bases)
BLKIO_GENERATIONS = (("blkio.bfq.", ()),
                     ("blkio.", ("io_queued", "sectors", "io_service_time", "io_wait_time")),
                     ("blkio.throttle.", ()))


def exists(root, path):
    return os.path.isfile(os.path.join(root, path.lstrip("/")))


def rwstat(root, path):
    """{"MAJ:MIN": {"Read": n, "Write": n, ...}} of a blkio rwstat file."""
    out = {}
    for line in read(root, path).splitlines():
        if line.startswith("Total "):
            continue
        m = _RWSTAT_LINE.match(line)
        assert m, "fixture line unknown to this test: %r" % line
        out.setdefault("%s:%s" % (m.group(1), m.group(2)), {})[m.group(3)] = int(m.group(4))
    return out


def device_name(root, majmin):
    """The kernel's name of a device in the tree's sys/dev/block, else MAJ_MIN."""
    base = "sys/dev/block/%s/" % majmin
    if not exists(root, base + "uevent"):
        return majmin.replace(":", "_")
    name = dict(l.split("=", 1) for l in read(root, base + "uevent").splitlines())["DEVNAME"]
    if name.startswith("dm-") and exists(root, base + "dm/name"):
        name = single(root, base + "dm/name")
    return name


def _first(root, directory, base):
    """The _recursive file if the cgroup has it, else the plain one, else None."""
    for name in (base + "_recursive", base):
        if exists(root, directory + "/" + name):
            return directory + "/" + name
    return None


def blkio_generations(root, top):
    """The v1 prefixes whose files count some device no earlier generation counts, judged by
    the top directory's plain io_service_bytes files; all of them if the tree has none."""
    listed = [(prefix, extras, set(rwstat(root, top + "/" + prefix + "io_service_bytes")))
              for prefix, extras in BLKIO_GENERATIONS if exists(root, top + "/" + prefix + "io_service_bytes")]
    if not listed:
        return list(BLKIO_GENERATIONS)
    chosen, seen = [], set()
    for prefix, extras, devices in listed:
        if devices - seen:
            chosen.append((prefix, extras))
            seen |= devices
    return chosen


def _emit(root, out, per_kind):
    """Samples from {"bytes"/"ops"/...: {MAJ:MIN: {op: n}}} as the README lists them."""
    for kind, type_, discard_type in (("bytes", "disk_octets", "total_bytes"),
                                      ("ops", "disk_ops", "total_operations")):
        per = per_kind.get(kind, {})
        for dev, ops in per.items():
            name = device_name(root, dev)
            out[(type_, name)] = (ops.get("Read", 0), ops.get("Write", 0))
            if "Discard" in ops:
                out[(discard_type, "discard-" + name)] = ops["Discard"]
        if per:
            out[(type_, "total")] = (sum(o.get("Read", 0) for o in per.values()),
                                     sum(o.get("Write", 0) for o in per.values()))
    for dev, ops in per_kind.get("io_queued", {}).items():
        out[("queue_length", device_name(root, dev))] = ops["Read"] + ops["Write"] + ops.get("Discard", 0)
    for dev, sectors in per_kind.get("sectors", {}).items():
        out[("derive", "disk_sectors-" + device_name(root, dev))] = sectors
    for kind, label in (("io_service_time", "service"), ("io_wait_time", "wait")):
        for dev, ops in per_kind.get(kind, {}).items():
            out[("disk_time", "%s-%s" % (label, device_name(root, dev)))] = (
                ops["Read"] // 10 ** 6, ops["Write"] // 10 ** 6)
    return out


def expected_blkio_v1(root, directory, top):
    """Every block I/O identifier and value a v1 container's blkio directory should give."""
    per_kind = {}
    for prefix, extras in blkio_generations(root, top):
        for kind, base in (("bytes", "io_service_bytes"), ("ops", "io_serviced")) + tuple((e, e) for e in extras):
            path = _first(root, directory, prefix + base)
            if path is None:
                continue
            if kind == "sectors":
                parsed = {dev: int(v) for dev, v in (l.split(" ") for l in read(root, path).splitlines())}
            else:
                parsed = rwstat(root, path)
            for dev, value in parsed.items():
                per_kind.setdefault(kind, {}).setdefault(dev, value)     # first generation wins
    return _emit(root, {}, per_kind)


def expected_blkio_v2(root, directory):
    """The same from a v2 io.stat."""
    path = directory + "/io.stat"
    if not exists(root, path):
        return {}
    keys = {"rbytes": ("bytes", "Read"), "wbytes": ("bytes", "Write"), "dbytes": ("bytes", "Discard"),
            "rios": ("ops", "Read"), "wios": ("ops", "Write"), "dios": ("ops", "Discard")}
    per_kind = {"bytes": {}, "ops": {}}
    for line in read(root, path).splitlines():
        dev, *pairs = line.split()
        per_kind["bytes"][dev], per_kind["ops"][dev] = {}, {}
        for pair in pairs:
            key, value = pair.split("=")
            if key in keys:
                kind, op = keys[key]
                per_kind[kind][dev][op] = int(value)
    return _emit(root, {}, per_kind)
