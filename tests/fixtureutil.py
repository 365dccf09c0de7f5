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

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
TREES = ("hybrid-debian12", "v2-pure", "v1-legacy-single", "v1-systemd-driver")
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
    """{plugin_instance: {(type, type_instance): value}} from --json entries."""
    out = {}
    for e in entries:
        key = (e["type"], e["type_instance"])
        per = out.setdefault(e["plugin_instance"], {})
        assert key not in per, "identifier dispatched twice: %s %s" % (e["plugin_instance"], key)
        assert len(e["values"]) == 1
        per[key] = e["values"][0]
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
