"""conf/grafana/collectd-cgroups.json: a Grafana (9 and later) dashboard for a Graphite data source fed by
collectd's write_graphite with its defaults (README.rst, "Graphing it: Graphite and Grafana").

Offline checks of the JSON model: the data source input and every reference to it, the two template
variables, units, ids, and every target: a Graphite expression (parsed here by a small parser of
graphite-web's target grammar) whose metric paths all start with ``$host.container-$container.`` and end
in an identifier of the README's table.  :func:`metric_paths` is for tests/e2e/test_graphite_e2e.py, which
expands ``$host`` and ``$container`` and asks graphite-web's render API for each target.
"""

import itertools
import json
import os
import re

import pytest

from collectd_cgroups.identifiers import TYPES
from tests.support import CHECKOUT

DASHBOARD = os.path.join(CHECKOUT, "conf", "grafana", "collectd-cgroups.json")
README = os.path.join(CHECKOUT, "README.rst")
PREFIX = "$host.container-$container."
DS_REF = {"type": "graphite", "uid": "${DS_GRAPHITE}"}
DATA_PANELS = ("timeseries", "bargauge", "table")
UNITS = {"percent", "bytes", "Bps", "binBps", "iops", "ops", "pps", "cps", "short", "none"}

# What may follow PREFIX in a metric path: the identifiers of README.rst, section "Identifiers and units"
# (its table), as write_graphite writes them: ``<type>-<type_instance>``, plus ``.<ds>`` for the types with
# two data sources (disk_octets, disk_ops, disk_time: read/write; if_*: rx/tx).  A glob ``*`` may stand for
# a device, an interface, a CPU number or a PSI kind; brace alternatives are expanded before matching.
NAME = r"[^.{}()]+"                 # <device>, <interface>: any name of one node, or '*'
MEMORY_FIELDS_V1 = ("cache rss rss_huge shmem mapped_file dirty writeback swap swapcached inactive_anon "
                    "active_anon inactive_file active_file unevictable").split()
MEMORY_FIELDS_V2 = ("anon file kernel kernel_stack pagetables sec_pagetables percpu sock vmalloc shmem zswap "
                    "zswapped file_mapped file_dirty file_writeback swapcached anon_thp file_thp shmem_thp "
                    "inactive_anon active_anon inactive_file active_file unevictable slab_reclaimable "
                    "slab_unreclaimable slab hugetlb").split()
MEMORY_EVENTS = ("low", "high", "max", "oom", "oom_kill", "oom_group_kill", "sock_throttled")
IDENTIFIERS = [
    r"cpu-(user|system|total)",
    r"cpu-cpu(\d+|\*)",
    r"derive-cpu_(periods|throttled_periods)",
    r"total_time_in_ms-cpu_throttled",
    r"memory-(usage|working_set|max_usage|limit|memsw_limit|high|swap_usage|swap_limit)",
    r"memory-(%s)" % "|".join(sorted(set(MEMORY_FIELDS_V1 + MEMORY_FIELDS_V2))),
    r"vmpage_action-(pg|pswp|workingset_|thp_|zswp|numa_|hugetlb_)[a-z0-9_]*",
    r"derive-memory_failcnt",
    r"derive-memory_(%s)" % "|".join(MEMORY_EVENTS),
    r"count-(pids|pids_limit)",
    r"total_time_in_ms-pressure_(cpu|memory|io)_(some|full|\*)",
    r"disk_octets-%s\.(read|write)" % NAME,
    r"disk_ops-%s\.(read|write)" % NAME,
    r"total_bytes-discard-%s" % NAME,
    r"total_operations-discard-%s" % NAME,
    r"queue_length-%s" % NAME,
    r"derive-disk_sectors-%s" % NAME,
    r"disk_time-(service|wait)-%s\.(read|write)" % NAME,
    r"if_(octets|packets|errors|dropped)-%s\.(rx|tx)" % NAME,
]
_IDENTIFIER_RES = [re.compile(p) for p in IDENTIFIERS]

# graphite-web 1.1 functions the targets may use: name -> kinds of the positional arguments
# ('series' a series list, 'str', 'num', 'int'; a trailing '*' repeats the kind before it).
FUNCTIONS = {
    "aliasSub": ("series", "str", "str"),
    "aliasByNode": ("series", "int", "*"),
    "alias": ("series", "str"),
    "highestAverage": ("series", "int"),
    "highestMax": ("series", "int"),
    "asPercent": ("series", "series", "int", "*"),
    "divideSeries": ("series", "series"),
    "divideSeriesLists": ("series", "series"),
    "scale": ("series", "num"),
    "exclude": ("series", "str"),
    "sumSeries": ("series", "*"),
}


# -- a parser of Graphite targets (graphite-web's render/grammar.py, without tags, templates or pipes) -------

class ParseError(ValueError):
    pass


def parse_target(text):
    """The expression tree of a Graphite target: ('call', name, [args]), ('path', text), ('str', text),
    ('num', value) or ('bool', value)."""
    node, pos = _expression(text, _skip(text, 0))
    pos = _skip(text, pos)
    if pos != len(text):
        raise ParseError("trailing text at %d: %r" % (pos, text[pos:]))
    return node


def _skip(text, pos):
    while pos < len(text) and text[pos] == " ":
        pos += 1
    return pos


_FUNC = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?=\()")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE]-?\d+)?(?=\s*[,)]|\s*$)")
_KEYWORD = re.compile(r"(true|false|none)(?=\s*[,)]|\s*$)", re.I)
_PATH_CHARS = re.compile(r"""[^(){},'"\\|\s]+""")


def _expression(text, pos):
    m = _FUNC.match(text, pos)
    if m:
        args, pos = [], _skip(text, m.end() + 1)
        if text.startswith(")", pos):
            return ("call", m.group(), args), pos + 1
        while True:
            arg, pos = _argument(text, pos)
            args.append(arg)
            pos = _skip(text, pos)
            if text.startswith(")", pos):
                return ("call", m.group(), args), pos + 1
            if not text.startswith(",", pos):
                raise ParseError("expected ',' or ')' at %d in %r" % (pos, text))
            pos = _skip(text, pos + 1)
    return _path(text, pos)


def _argument(text, pos):
    if pos < len(text) and text[pos] in "'\"":
        quote, end = text[pos], pos + 1
        while end < len(text) and text[end] != quote:
            end += 2 if text[end] == "\\" else 1
        if end >= len(text):
            raise ParseError("unterminated string at %d in %r" % (pos, text))
        return ("str", text[pos + 1:end]), end + 1
    for pattern, kind in ((_NUMBER, "num"), (_KEYWORD, "bool")):
        m = pattern.match(text, pos)
        if m:
            value = float(m.group()) if kind == "num" else m.group().lower()
            return (kind, value), m.end()
    return _expression(text, pos)


def _path(text, pos):
    start = pos
    while pos < len(text):
        m = _PATH_CHARS.match(text, pos)
        if m:
            pos = m.end()
        elif text[pos] == "{":
            end = text.find("}", pos)
            if end < 0 or re.search(r"[{()'\"\s]", text[pos + 1:end]):
                raise ParseError("bad {...} at %d in %r" % (pos, text))
            pos = end + 1
        else:
            break
    path = text[start:pos]
    if not path or ".." in path or path.startswith(".") or path.endswith("."):
        raise ParseError("expected a metric path at %d in %r" % (start, text))
    return ("path", path), pos


def walk(node):
    yield node
    if node[0] == "call":
        for arg in node[2]:
            for sub in walk(arg):
                yield sub


def paths_of(target):
    """The metric paths of a target: the arguments of its functions that are paths (they contain $host.)."""
    return [n[1] for n in walk(parse_target(target)) if n[0] == "path"]


def expand_braces(path):
    """Graphite's {a,b} alternatives, expanded: 'x.{a,b}.y' -> ['x.a.y', 'x.b.y']."""
    parts = re.split(r"(\{[^}]*\})", path)
    choices = [p[1:-1].split(",") if p.startswith("{") else [p] for p in parts]
    return ["".join(c) for c in itertools.product(*choices)]


def identifier_of(tail):
    """The README identifier pattern a path's tail (after PREFIX, braces expanded) matches, or None."""
    for pattern in _IDENTIFIER_RES:
        if pattern.fullmatch(tail):
            return pattern.pattern
    return None


# -- the dashboard ---------------------------------------------------------------------------------------------

def load(path=DASHBOARD):
    with open(path) as f:
        return json.load(f)


def all_panels(dashboard):
    """Every panel, rows included, and the panels of collapsed rows."""
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def data_panels(dashboard):
    return [p for p in all_panels(dashboard) if p.get("type") != "row"]


def metric_paths(dashboard):
    """{panel title: [(target expression, [its metric paths]), ...]} for every panel with targets, the
    paths as written (``$host.container-$container.cpu-total``).  Replacing ``$host`` and ``$container``
    by literal values gives targets for graphite-web's render API."""
    out = {}
    for panel in data_panels(dashboard):
        out[panel["title"]] = [(t["target"], paths_of(t["target"])) for t in panel.get("targets", [])]
    return out


@pytest.fixture(scope="module")
def dashboard():
    return load()


@pytest.fixture(scope="module")
def targets(dashboard):
    return [(title, target, paths) for title, items in metric_paths(dashboard).items()
            for target, paths in items]


def test_valid_json_with_the_required_top_level_keys(dashboard):
    for key in ("__inputs", "__requires", "annotations", "panels", "schemaVersion", "templating", "time",
                "title", "uid"):
        assert key in dashboard, key
    assert dashboard["uid"] == "collectd-cgroups"
    assert dashboard["title"] == "collectd-cgroups: containers"
    assert 36 <= dashboard["schemaVersion"] <= 39
    assert dashboard.get("id") is None          # importable: Grafana assigns the id
    assert isinstance(dashboard["templating"]["list"], list)


def test_the_graphite_input_and_every_datasource_refers_to_it(dashboard):
    inputs = dict((i["name"], i) for i in dashboard["__inputs"])
    assert inputs["DS_GRAPHITE"]["type"] == "datasource"
    assert inputs["DS_GRAPHITE"]["pluginId"] == "graphite"
    requires = set((r["type"], r["id"]) for r in dashboard["__requires"])
    assert {("grafana", "grafana"), ("datasource", "graphite")} <= requires
    for panel in data_panels(dashboard):
        assert ("panel", panel["type"]) in requires, panel["type"]
        assert panel["datasource"] == DS_REF, panel["title"]
        for t in panel["targets"]:
            assert t.get("datasource") == DS_REF, (panel["title"], t)
    for var in dashboard["templating"]["list"]:
        assert var["datasource"] == DS_REF, var["name"]
    # Nothing else names a data source (the built-in annotation is Grafana's own).
    text = json.dumps(dashboard)
    assert set(re.findall(r"\$\{(DS_[A-Z_]+)\}", text)) == {"DS_GRAPHITE"}


def _query(var):
    q = var["query"]
    return q["target"] if isinstance(q, dict) else q


def test_the_template_variables(dashboard):
    variables = dict((v["name"], v) for v in dashboard["templating"]["list"])
    assert set(variables) == {"host", "container"}
    host, container = variables["host"], variables["container"]
    assert host["type"] == "query" and _query(host) == "*"
    assert host["multi"] is False and host["includeAll"] is False
    assert container["type"] == "query" and _query(container) == "$host.container-*"
    assert container["multi"] is True and container["includeAll"] is True
    assert container["allValue"] == "*"
    assert container["regex"] == "/^container-(.*)$/"
    for var in (host, container):
        if isinstance(var["query"], dict):
            assert var["query"].get("queryType", "Default") == "Default"
    # The regex, as Grafana applies it to the nodes graphite-web's find returns: the plugin_instance.
    body = re.fullmatch(r"/(.*)/([gimsuy]*)", container["regex"]).group(1)
    assert re.search(body, "container-docker-web1").group(1) == "docker-web1"
    assert re.search(body, "container-k8s-shop_web-1_app").group(1) == "k8s-shop_web-1_app"


def test_rows_and_panels(dashboard):
    rows = [p["title"] for p in dashboard["panels"] if p.get("type") == "row"]
    assert rows == ["Overview", "CPU", "Memory", "Block I/O", "Network", "Pids", "Pressure"]
    for panel in all_panels(dashboard):
        if panel["type"] == "row":
            assert not panel.get("targets")
        else:
            assert panel["type"] in DATA_PANELS, panel["type"]
            assert panel.get("targets"), "%s has no target" % panel["title"]
            assert all(t.get("target") for t in panel["targets"]), panel["title"]
            refs = [t["refId"] for t in panel["targets"]]
            assert len(set(refs)) == len(refs), panel["title"]
            assert panel.get("description"), panel["title"]
    overview = [p for p in data_panels(dashboard) if p["gridPos"]["y"] < _row_y(dashboard, "CPU")]
    assert {p["type"] for p in overview} <= {"bargauge", "table"} and len(overview) == 2
    assert all("highestAverage(" in t["target"] for p in overview for t in p["targets"])


def _row_y(dashboard, title):
    return [p for p in dashboard["panels"] if p.get("type") == "row" and p["title"] == title][0]["gridPos"]["y"]


def test_units_on_every_panel(dashboard):
    for panel in data_panels(dashboard):
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        assert unit in UNITS, "%s: unit %r" % (panel["title"], unit)


def test_unique_ids_titles_and_targets_and_no_overlap(dashboard):
    ids = [p["id"] for p in all_panels(dashboard)]
    assert len(set(ids)) == len(ids), ids
    titles = [p["title"] for p in data_panels(dashboard)]
    assert len(set(titles)) == len(titles), titles
    exprs = [t["target"] for p in data_panels(dashboard) for t in p["targets"]]
    assert len(set(exprs)) == len(exprs), [e for e in exprs if exprs.count(e) > 1]
    cells = {}
    for p in all_panels(dashboard):
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, "%s overlaps %s" % (p["title"], cells[(x, y)])
                cells[(x, y)] = p["title"]


def test_every_target_parses_and_uses_only_the_two_variables(targets):
    assert len(targets) >= 20
    for title, target, paths in targets:
        # Grafana interpolates $host and $container only; nothing else that graphite-web would not take.
        variables = re.findall(r"\$(\w*)", target)
        assert variables and set(variables) <= {"host", "container"}, target
        assert "${" not in target and "[[" not in target and "$__" not in target, target
        assert "#" not in target, target                # no references to other queries (#A)
        tree = parse_target(target)
        for node in walk(tree):
            if node[0] == "call":
                assert node[1] in FUNCTIONS, "%s: unknown function %s" % (title, node[1])
                _check_arguments(node, target)
                if node[1] in ("aliasSub", "exclude"):
                    re.compile(node[2][1][1])       # the search pattern: a Python regex in graphite-web
        literal = target.replace("$host", "myhost").replace("$container", "docker-web1")
        assert [p for p in paths_of(literal)] == [
            p.replace("$host", "myhost").replace("$container", "docker-web1") for p in paths]


def _check_arguments(node, target):
    _, name, args = node
    kinds = list(FUNCTIONS[name])
    repeat = kinds[-1] == "*"
    if repeat:
        kinds = kinds[:-1]
        assert len(args) >= len(kinds) - 1, target
    else:
        assert len(args) == len(kinds), "%s: %d arguments to %s" % (target, len(args), name)
    for i, arg in enumerate(args):
        kind = kinds[min(i, len(kinds) - 1)]
        if kind == "series":
            assert arg[0] in ("call", "path"), "%s: argument %d of %s" % (target, i + 1, name)
        elif kind == "str":
            assert arg[0] == "str", "%s: argument %d of %s" % (target, i + 1, name)
        elif kind == "int":
            assert arg[0] == "num" and arg[1] == int(arg[1]), "%s: argument %d of %s" % (target, i + 1, name)
        elif kind == "num":
            assert arg[0] == "num", "%s: argument %d of %s" % (target, i + 1, name)


def test_every_metric_path_is_a_container_identifier_of_the_readme(targets):
    for title, target, paths in targets:
        assert paths, target
        for path in paths:
            assert path.startswith(PREFIX), "%s: %s" % (title, path)
            for tail in expand_braces(path[len(PREFIX):]):
                assert identifier_of(tail), "%s: %s is no identifier of README.rst's table" % (title, tail)


def test_the_dashboard_covers_the_groups(targets):
    tails = set()
    for _, _, paths in targets:
        for path in paths:
            tails.update(expand_braces(path[len(PREFIX):]))
    wanted = {"cpu-total", "cpu-user", "cpu-system", "derive-cpu_throttled_periods", "derive-cpu_periods",
              "total_time_in_ms-cpu_throttled", "memory-usage", "memory-working_set", "memory-cache",
              "memory-file", "memory-limit", "derive-memory_oom_kill", "derive-memory_failcnt",
              "disk_octets-*.read", "disk_octets-*.write", "disk_ops-*.read", "disk_ops-*.write",
              "disk_octets-total.read", "disk_ops-total.write", "count-pids", "count-pids_limit",
              "total_time_in_ms-pressure_cpu_*", "total_time_in_ms-pressure_memory_*",
              "total_time_in_ms-pressure_io_*"}
    wanted |= {"%s-*.%s" % (t, d) for t in ("if_octets", "if_packets", "if_errors", "if_dropped")
               for d in ("rx", "tx")}
    assert wanted <= tails, sorted(wanted - tails)


# -- the legends: what graphite-web names the series, run through the targets' functions ----------------------

SAMPLES = ("sda", "total", "eth0", "some", "full", "0")     # values a '*' of the tails may take


def _series_names(node, host="myhost", container="docker-web1"):
    kind = node[0]
    if kind == "path":
        out = []
        for path in expand_braces(node[1].replace("$host", host).replace("$container", container)):
            head, tail = path.split(".", 2)[:2], path.split(".", 2)[2]
            for combo in itertools.product(SAMPLES, repeat=tail.count("*")):
                concrete = tail
                for value in combo:
                    concrete = concrete.replace("*", value, 1)
                if identifier_of(concrete):
                    out.append(".".join(head + [concrete]))
        return out
    _, name, args = node
    first = _series_names(args[0], host, container)
    if name in ("highestAverage", "highestMax"):
        return first
    if name == "scale":
        return ["scale(%s,%g)" % (n, args[1][1]) for n in first]
    if name == "exclude":
        return [n for n in first if not re.search(args[1][1], n)]
    if name == "asPercent":
        totals = _series_names(args[1], host, container)
        return ["asPercent(%s,%s)" % (a, b) for a, b in zip(first, totals)]
    if name == "aliasSub":
        return [re.sub(args[1][1], args[2][1], n) for n in first]
    raise AssertionError("no naming rule for %s in this test" % name)


def test_legends_start_with_the_container(targets):
    for title, target, _ in targets:
        names = _series_names(parse_target(target))
        assert names, "%s: %s names no series" % (title, target)
        for n in names:
            assert n == "docker-web1" or n.startswith("docker-web1 "), "%s: legend %r" % (title, n)
            assert "total_" not in n and "." not in n, "%s: legend %r (a name not aliased)" % (title, n)
            assert not ("per device" in title and " total " in n), "%s: %r, disk_*-total not excluded" % (title, n)
        assert len(set(names)) == len(names), "%s: legends %s" % (title, names)


# -- the identifier list above against the README's table ------------------------------------------------------

def _readme_table():
    """Rows of the "Identifiers and units" table: [[column text, ...], ...], each cell's lines joined."""
    with open(README) as f:
        text = f.read()
    section = text.split("\nIdentifiers and units\n", 1)[1].split("\nBlock I/O\n", 1)[0]
    lines = section.splitlines()
    borders = [i for i, line in enumerate(lines) if re.fullmatch(r"=+( +=+)+", line)]
    assert len(borders) == 3, "the table's three border lines"
    spans = [m.span() for m in re.finditer(r"=+", lines[borders[0]])]
    rows = []
    for line in lines[borders[1] + 1:borders[2]]:
        cells = [line[a:b if i < len(spans) - 1 else None].strip() for i, (a, b) in enumerate(spans)]
        if cells[0]:
            rows.append([[c] for c in cells])
        else:
            for cell, c in zip(rows[-1], cells):
                cell.append(c)
    return [[" ".join(c for c in cell if c) for cell in row] for row in rows]


def _readme_identifiers():
    """Every identifier the table names, placeholders filled in from the row (write_graphite's form)."""
    out = []
    for row in _readme_table():
        for name in re.findall(r"``([^`]+)``", row[0]):
            if "-" not in name:
                continue
            if name == "memory-<field>":
                v1 = re.search(r"\bv1 ``([a-z_ ]+)``", row[3]).group(1).split()
                v2 = re.search(r"\bv2 ``([a-z_ ]+)``", row[3]).group(1).split()
                assert (v1, v2) == (MEMORY_FIELDS_V1, MEMORY_FIELDS_V2), "the README's memory.stat fields"
                names = ["memory-" + f for f in v1 + v2]
            elif name == "derive-memory_<key>":
                keys = re.findall(r"``([a-z_]+)``", row[3].split("memory.events", 1)[1])
                assert tuple(keys) == MEMORY_EVENTS, "the README's memory.events keys"
                names = ["derive-memory_" + k for k in keys]
            elif name == "vmpage_action-<field>":
                names = ["vmpage_action-" + f for f in ("pgfault", "pgmajfault", "pgpgin", "pgpgout")]
            elif name == "total_time_in_ms-pressure_<res>_<kind>":
                names = ["total_time_in_ms-pressure_%s_%s" % rk
                         for rk in itertools.product(("cpu", "memory", "io"), ("some", "full"))]
            else:
                names = [name.replace("<N>", "3").replace("<device>", "vg0-root")
                         .replace("<interface>", "eth0")]
            for n in names:
                assert "<" not in n, n
                sources = TYPES[n.split("-", 1)[0]]
                out.extend([n] if len(sources) == 1 else ["%s.%s" % (n, ds) for ds, _ in sources])
    return out


def test_the_identifier_patterns_are_the_readmes_table():
    documented = _readme_identifiers()
    assert len(documented) > 60
    assert [d for d in documented if not identifier_of(d)] == []
    # And no pattern is of the test's own invention.
    for pattern in _IDENTIFIER_RES:
        assert [d for d in documented if pattern.fullmatch(d)], pattern.pattern


def test_the_parser_itself():
    assert parse_target("a.b") == ("path", "a.b")
    assert parse_target("scale(a.{b,c}.*, 0.1)") == ("call", "scale", [("path", "a.{b,c}.*"), ("num", 0.1)])
    assert paths_of("aliasSub(asPercent($host.x.a, $host.x.b, 1), '^(.*)[.]x', '\\1')") == [
        "$host.x.a", "$host.x.b"]
    for bad in ("scale(a.b, 0.1", "scale(a.b,, 1)", "a.b)", "aliasSub(a.b, 'x)", "a..b", "f()x"):
        with pytest.raises(ParseError):
            parse_target(bad)
    assert expand_braces("x.{a,b}.y-{1,2}") == ["x.a.y-1", "x.a.y-2", "x.b.y-1", "x.b.y-2"]
