"""collectd -> Graphite, end to end, with Debian's carbon-cache and graphite-web on 127.0.0.1.

A real collectd runs the shipped block with ``write_graphite`` (its defaults: StoreRates true, so DERIVE
counters arrive as rates per second; ``.`` in names escaped as ``_``) into a carbon-cache of the test's
own (``ccg_lab/graphite.py``).  The containers are synthetic, each with its own network
namespace and veth (``NetLab``), doing CPU, network and O_DIRECT block I/O work while collectd runs.

- Every identifier collectd holds for a container has its whisper file(s), and nothing else lands.
- What whisper stores agrees with the kernel's own files: gauges equal them; a counter stored raw (a
  second node with StoreRates false) grew as the kernel's file did between two readings taken before and
  after the work (CPU from ``cpuacct.usage``, bytes sent from ``/proc/<pid>/net/dev``, bytes written from
  the blkio file); and each rate stored is the rate of one of collectd's passes (from its CSV records, to
  the millisecond): with Interval 1 into 1-second retention, jitter can round two passes into one second,
  and whisper keeps one, so summed rates are not the growth (CI: 38.9 of 61.2 cs with no second empty).
- Every target of the shipped dashboard (``conf/grafana/collectd-cgroups.json``), with ``$host`` and
  ``$container`` expanded, returns data from graphite-web's render API; PNGs of the CPU and memory panels
  are saved under ``build/artefacts/``.
- The README's pruning command removes the whisper files of a container that is gone, and only those.
"""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

from ccg_lab.graphite import Carbon, GraphiteWeb, free_port
from ccg_lab.synthetic import CgroupTree, activate_blk_throttle
from collectd_cgroups.identifiers import TYPES
from tests.support import CHECKOUT
from tests.support.collectd_harness import HOSTNAME, Collectd, wait_until, write_config
from tests.support.netnsutil import NetLab, proc_net_dev

DASHBOARD = os.path.join(CHECKOUT, "conf", "grafana", "collectd-cgroups.json")
ARTEFACTS = os.path.join(CHECKOUT, "build", "artefacts")
MiB = 1 << 20
BURN_SECONDS = 0.6
UDP_COUNT, UDP_SIZE = 400, 1000
WRITE_MIB = 8


RAW = "raw."      # the prefix of the second node's paths, the one with StoreRates false


def write_graphite(port, node="carbon", raw_node=False):
    """collectd's write_graphite with its defaults but for where carbon listens; with ``raw_node`` a
    second node into the same carbon stores the counters raw (``StoreRates false``) under ``raw.``."""
    def block(name, extra=""):
        return '  <Node "%s">\n    Host "127.0.0.1"\n    Port "%d"\n    Protocol "tcp"\n%s  </Node>\n' % (
            name, port, extra)
    nodes = block(node)
    if raw_node:
        nodes += block(node + "-raw", '    StoreRates false\n    Prefix "%s"\n' % RAW)
    return 'LoadPlugin write_graphite\n<Plugin write_graphite>\n%s</Plugin>\n\n' % nodes


def graphite_paths(identifier):
    """The Graphite paths write_graphite makes of ``host/plugin-instance/type-type_instance``: each part
    with '.' escaped as '_', the data source name appended for types with more than one."""
    host, plugin_instance, type_instance = identifier.split("/")
    base = ".".join(part.replace(".", "_") for part in (host, plugin_instance, type_instance))
    sources = TYPES[type_instance.split("-", 1)[0]]
    if len(sources) == 1:
        return [base]
    return ["%s.%s" % (base, name) for name, _ in sources]


def pass_rates(rows, column):
    """``[(time, rate)]`` of every pass in collectd's CSV rows (StoreRates false, times to the millisecond):
    the rate collectd computes for a DERIVE, the counter's change over the time between two passes."""
    return [(t1, (r1[column] - r0[column]) / (t1 - t0))
            for r0, r1 in zip(rows, rows[1:]) for t0, t1 in [(r0[0], r1[0])] if t1 > t0]


def stored_rate_is_a_pass_rate(second, stored, rates):
    """Whether the rate whisper holds for ``second`` is that of a pass write_graphite put there (its time
    rounded to the second; 2 ms either way for the CSV's rounding).  Under jitter two passes can round into
    one second, and whisper keeps one of them: the other's rate is lost to the graph, not wrong."""
    return any(abs(t - second) <= 0.502 and abs(stored - rate) <= 0.005 * abs(rate) + 1e-6
               for t, rate in rates)


def raw_growth(points, since, until):
    """A raw counter's growth from the last pass before ``since`` to the first after ``until``: what a
    whisper file of ``StoreRates false`` says, whatever seconds are empty (a second away from both, as a
    value's time is rounded to the second)."""
    before = [v for ts, v in points if ts <= since - 1]
    after = [v for ts, v in points if ts >= until + 1]
    assert before and after, (since, until, points[-10:])
    return after[0] - before[-1]


def blkio_written(directory):
    """Bytes written, from the container's own v1 blkio file (all devices), read our own way."""
    total = 0
    for name in ("blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_service_bytes"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 3 and parts[1] == "Write":
                        total += int(parts[2])
            return total
    raise AssertionError("no blkio.throttle.io_service_bytes in %s" % directory)


def cpuacct_usage(directory):
    with open(os.path.join(directory, "cpuacct.usage")) as f:
        return int(f.read())


@pytest.fixture(scope="module")
def scratch():
    """A directory on a real block device (O_DIRECT I/O is counted there, not on tmpfs)."""
    for base in ("/var/tmp", tempfile.gettempdir()):
        d = tempfile.mkdtemp(prefix="ccg-graphite-", dir=base)
        probe = os.path.join(d, "probe")
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
            os.close(fd)
        except OSError:
            shutil.rmtree(d)
            continue
        os.unlink(probe)
        yield d
        shutil.rmtree(d)
        return
    pytest.fail("no directory that takes O_DIRECT writes (/var/tmp, %s)" % tempfile.gettempdir())


def write_direct(directory, mib, box):
    """``mib`` MiB written with O_DIRECT by a process in ``box``'s cgroups (moved there before it writes)."""
    writer = subprocess.Popen(["sh", "-c", 'read go && exec dd if=/dev/zero of="$0" bs=1M count=%d '
                               'oflag=direct status=none' % mib, os.path.join(directory, "data")],
                              stdin=subprocess.PIPE)
    box.lab.move(writer.pid, box.dirs)
    writer.communicate(b"go\n", timeout=60)
    assert writer.returncode == 0


class Pipeline(object):
    """Carbon, a NetLab with two containers, collectd with the plugin and write_graphite; the work done
    and the kernel's figures before and after it."""


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, scratch):
    work = tmp_path_factory.mktemp("graphite")
    p = Pipeline()
    with Carbon(str(work / "carbon")) as carbon, NetLab() as lab:
        p.carbon, p.lab = carbon, lab
        web = lab.box("web")
        web.container.set_memory_limit(256 * MiB)
        web.container.set_cpu_limit(0.5)        # the burn below is throttled: throttling figures move
        lab.box("db")
        # Two names that write_graphite would make one: they must stay two series.
        lab.box("eco.app.v1", veth=False)
        lab.box("eco_app_v1", veth=False)
        p.web = web
        match = 'Match "^/%s/(?P<name>[^/]+)$"' % re.escape(lab.tree.prefix)
        with Collectd(str(work / "collectd"), modules=[[match]],
                      extra=write_graphite(carbon.port, raw_node=True)) as cd:
            p.cd = cd
            p.instance = "container-cgroup-web"
            prefix = "%s/%s/" % (HOSTNAME, p.instance)
            cd.wait_listval({prefix + "if_octets-eth0", prefix + "cpu-total", HOSTNAME + "/container-cgroup-db/cpu-total"})
            cpu_dir, blkio_dir = web.dirs["cpuacct"], web.dirs["blkio"]
            activate_blk_throttle(blkio_dir, scratch)      # else a fresh disk counts nothing on v1 (6.9+)
            # A device enters the container's blkio files with its first I/O, and the first value of a
            # DERIVE has no rate: one small write first, so that the measured one below is all counted.
            write_direct(scratch, 1, web)
            cd.wait_listval({prefix + "disk_octets-total"})
            time.sleep(2.5)
            p.started = time.time()
            before = (cpuacct_usage(cpu_dir), proc_net_dev(web.pid)["eth0"][4], blkio_written(blkio_dir))
            # The work: CPU in the container's cgroups, UDP out of its eth0, O_DIRECT writes to a disk.
            burner = web.container.spawn(cpu_seconds=BURN_SECONDS)
            burner.wait_ready(timeout=60)
            sent = web.send_udp(UDP_COUNT, UDP_SIZE)
            write_direct(scratch, WRITE_MIB, web)
            after = (cpuacct_usage(cpu_dir), proc_net_dev(web.pid)["eth0"][4], blkio_written(blkio_dir))
            p.finished = time.time()
            p.before, p.after, p.sent = before, after, sent
            time.sleep(4)       # the passes after the work reach carbon
            p.listed = sorted(i for i in cd.listval() if i.startswith(HOSTNAME + "/container-"))
            p.expected = sorted(path for i in p.listed for path in graphite_paths(i))
            wait_until(lambda: set(p.expected) | set(RAW + e for e in p.expected) <= set(carbon.whisper_files()),
                       30, what="a whisper file for every identifier, rates and raw")
            p.web_ui = GraphiteWeb(str(work / "web"), carbon.whisper_dir)
            with p.web_ui:
                yield p
            assert cd.alive()


def test_every_identifier_lands_in_whisper_and_nothing_else(pipeline):
    files = set(pipeline.carbon.whisper_files())
    ours = sorted(f for f in files if f.startswith(HOSTNAME + ".container-"))
    per = {}
    for f in ours:
        per[f.split(".")[1]] = per.get(f.split(".")[1], 0) + 1
    print("%d identifiers, %d whisper files: %s (web has done block I/O, db not)" % (
        len(pipeline.listed), len(ours), per))
    assert ours == pipeline.expected
    assert sorted(f[len(RAW):] for f in files if f.startswith(RAW + HOSTNAME + ".container-")) == ours
    groups = {"cpu-total", "cpu-user", "memory-usage", "memory-working_set", "memory-limit", "count-pids",
              "if_octets-eth0.rx", "if_packets-eth0.tx", "if_errors-eth0.rx", "if_dropped-eth0.tx",
              "derive-cpu_throttled_periods", "disk_octets-total.write"}
    web = [f.split(".", 2)[2] for f in ours if f.split(".")[1] == pipeline.instance]
    assert groups <= set(web), sorted(groups - set(web))
    assert [f for f in web if re.match(r"disk_octets-(?!total)[^.]+\.write$", f)], "no per-device block I/O"
    if os.path.exists(os.path.join(pipeline.web.dirs.get("unified", "/nonexistent"), "cpu.pressure")):
        assert [f for f in web if f.startswith("total_time_in_ms-pressure_")], web


def test_names_that_graphite_escapes_the_same_stay_apart(pipeline):
    eco = sorted(set(f.split(".")[1] for f in pipeline.carbon.whisper_files()
                     if f.split(".")[1].startswith("container-cgroup-eco")))
    listed = sorted(set(i.split("/")[1] for i in pipeline.listed if "/container-cgroup-eco" in i))
    print("collectd: %s; Graphite: %s" % (listed, eco))
    assert len(listed) == 2 and len(eco) == 2, (listed, eco)
    assert "container-cgroup-eco.app.v1" in listed or "container-cgroup-eco_app_v1" in listed
    assert [i for i in listed if re.match(r"container-cgroup-eco[._]app[._]v1-\w+$", i)], listed
    for instance in eco:
        assert pipeline.carbon.fetch("%s.%s.count-pids" % (HOSTNAME, instance), 60)[-1][1] == 1


def test_whisper_values_agree_with_the_kernels_files(pipeline):
    carbon, base = pipeline.carbon, "%s.%s." % (HOSTNAME, pipeline.instance)
    (cpu0, tx0, wr0), (cpu1, tx1, wr1) = pipeline.before, pipeline.after
    since, until = pipeline.started, pipeline.finished
    kernel = {"cpu-total": (cpu1 - cpu0) / 1e7, "if_octets-eth0.tx": tx1 - tx0,      # centiseconds, bytes
              "disk_octets-total.write": wr1 - wr0}
    slack = {"cpu-total": 2, "if_octets-eth0.tx": 2000, "disk_octets-total.write": 0}  # ARP and the like
    assert kernel["cpu-total"] >= BURN_SECONDS * 100 * 0.95
    assert kernel["if_octets-eth0.tx"] >= pipeline.sent
    assert kernel["disk_octets-total.write"] >= WRITE_MIB * MiB
    # The CSV columns (epoch first) of each metric's data source.
    csv = {"cpu-total": ("cpu-total", 1), "if_octets-eth0.tx": ("if_octets-eth0", 2),
           "disk_octets-total.write": ("disk_octets-total", 2)}
    for metric, growth in sorted(kernel.items()):
        # StoreRates false: the raw counter, the same values as the kernel's to the unit.
        raw = raw_growth(carbon.fetch(RAW + base + metric, 600), since, until)
        # StoreRates true (what the dashboard graphs): every second's rate is that of one of collectd's
        # passes, whose counter (its CSV) grew as the kernel's did.
        type_instance, column = csv[metric]
        rows = pipeline.cd.csv_rows(pipeline.instance.split("-", 1)[1], type_instance)
        rates = pass_rates(rows, column)
        stored = [(ts, v) for ts, v in carbon.fetch(base + metric, 600) if since - 1 <= ts <= until + 2]
        wrong = [(ts, v) for ts, v in stored if not stored_rate_is_a_pass_rate(ts, v, rates)]
        first = [r for r in rows if r[0] <= since - 0.5][-1]
        last = [r for r in rows if r[0] >= until + 0.5][0]
        passes = sum(1 for t, _ in rates if first[0] < t <= last[0])
        print("whisper vs kernel, %s: raw %.1f, kernel %.1f, collectd's CSV %.1f over %d passes; whisper "
              "holds %d seconds of rates, %d not a pass's" % (metric, raw, growth, last[column] - first[column],
                                                            passes, len(stored), len(wrong)))
        assert abs(raw - growth) <= 0.05 * growth + slack[metric], (metric, raw, growth)
        assert abs(last[column] - first[column] - growth) <= 0.05 * growth + slack[metric], (metric, rows[-12:])
        assert any(v > 0 for _, v in stored) and not wrong, (metric, stored, wrong, rates[-12:])
    # Gauges: what the kernel says now.
    limit = carbon.fetch(base + "memory-limit", 60)[-1][1]
    assert limit == 256 * MiB
    with open(os.path.join(pipeline.web.dirs["pids"], "pids.current")) as f:
        assert carbon.fetch(base + "count-pids", 60)[-1][1] == int(f.read())
    with open(os.path.join(pipeline.web.dirs["memory"], "memory.usage_in_bytes")) as f:
        usage = int(f.read())
    stored = carbon.fetch(base + "memory-usage", 60)[-1][1]
    assert 0.5 * usage <= stored <= 2 * usage + MiB, (stored, usage)


# -- the dashboard ---------------------------------------------------------------------------------------------

def dashboard_targets():
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    panels = []
    for panel in dashboard["panels"]:
        panels.extend(panel.get("panels", [])) if panel.get("type") == "row" else panels.append(panel)
    return [(panel["title"], t["target"]) for panel in panels for t in panel.get("targets", []) if "target" in t]


def expand(target, host, container):
    return target.replace("$host", host).replace("$container", container)


def test_every_dashboard_target_returns_data(pipeline):
    web = pipeline.web_ui
    host, container = HOSTNAME, pipeline.instance.split("-", 1)[1]
    empty = []
    targets = dashboard_targets()
    assert targets, "the dashboard has no targets"
    for title, target in targets:
        series = web.render_json(expand(target, host, container), frm="-10min")
        if not any(v is not None for s in series for v, _ in s["datapoints"]):
            empty.append((title, target))
    print("%d targets of the dashboard, %d without data" % (len(targets), len(empty)))
    assert not empty, empty
    # The template variables, as Grafana asks graphite-web for them.
    assert HOSTNAME in [m["text"] for m in web.find("*")]
    assert "container-cgroup-web" in [m["text"] for m in web.find(HOSTNAME + ".container-*")]
    os.makedirs(ARTEFACTS, exist_ok=True)
    for wanted in ("CPU", "Memory"):
        chosen = [t for title, t in targets if title.lower().startswith(wanted.lower())][:3]
        assert chosen, "no %s panel" % wanted
        out = os.path.join(ARTEFACTS, "graphite-%s.png" % wanted.lower())
        web.render_png([expand(t, host, container) for t in chosen], out, frm="-90s")
        with open(out, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        print("saved", out)


# -- pruning ---------------------------------------------------------------------------------------------------

def readme_prune_commands():
    """The shell lines of the README's pruning block (the one naming ``-mtime``), as a user copies them."""
    with open(os.path.join(CHECKOUT, "README.rst")) as f:
        text = f.read()
    blocks = re.findall(r"::\n\n((?:    .*\n|\n)+)", text)
    chosen = [b for b in blocks if "-mtime" in b and "whisper" in b]
    assert len(chosen) == 1, "the README should have one pruning block"
    return [line.strip() for line in chosen[0].splitlines() if line.strip() and not line.strip().startswith("#")]


def test_readme_pruning_removes_only_the_gone_containers_files(pipeline, tmp_path):
    tree = str(tmp_path / "whisper")
    shutil.copytree(pipeline.carbon.whisper_dir, tree)
    host_dir = os.path.join(tree, HOSTNAME)
    # The host's own plugins (collectd's load plugin, say) and a live container stay; a container whose
    # files were last written 8 days ago goes, directory and all.
    os.makedirs(os.path.join(host_dir, "load"))
    with open(os.path.join(host_dir, "load", "load.wsp"), "wb") as f:
        f.write(b"\0" * 64)
    old = time.time() - 8 * 86400
    for directory, _, names in os.walk(os.path.join(host_dir, "container-cgroup-db")):
        for name in names:
            os.utime(os.path.join(directory, name), (old, old))
    os.utime(os.path.join(host_dir, "load", "load.wsp"), (old, old))
    for line in readme_prune_commands():
        subprocess.run(line.replace("/var/lib/graphite/whisper", tree), shell=True, check=True)
    assert not os.path.exists(os.path.join(host_dir, "container-cgroup-db"))
    assert os.path.exists(os.path.join(host_dir, "load", "load.wsp"))
    kept = [f for f in pipeline.expected if f.startswith("%s.%s." % (HOSTNAME, pipeline.instance))]
    for path in kept:
        assert os.path.exists(os.path.join(tree, path.replace(".", "/") + ".wsp")), path


# -- many hosts, one central collectd ----------------------------------------------------------------------------

def network_sender(port, username, password):
    return ('LoadPlugin network\n<Plugin network>\n  <Server "127.0.0.1" "%d">\n    SecurityLevel Encrypt\n'
            '    Username "%s"\n    Password "%s"\n  </Server>\n</Plugin>\n\n' % (port, username, password))


def network_listener(port, authfile):
    return ('LoadPlugin network\n<Plugin network>\n  <Listen "127.0.0.1" "%d">\n    SecurityLevel Encrypt\n'
            '    AuthFile "%s"\n  </Listen>\n</Plugin>\n\n' % (port, authfile))


def test_two_hosts_forward_encrypted_to_a_central_collectd_and_a_stranger_is_rejected(tmp_path):
    port = free_port(kind=socket.SOCK_DGRAM)
    authfile = str(tmp_path / "passwd")
    with open(authfile, "w") as f:
        f.write("host-a: secret-a\nhost-b: secret-b\n")
    os.chmod(authfile, 0o600)
    with Carbon(str(tmp_path / "carbon")) as carbon, NetLab() as lab:
        for name in ("a1", "b1", "r1"):
            lab.box(name)
        prefix = re.escape(lab.tree.prefix)
        central = Collectd(str(tmp_path / "central"), plugin=False, hostname="ccg-central",
                           extra=network_listener(port, authfile) + write_graphite(carbon.port))
        senders = [Collectd(str(tmp_path / host), hostname="ccg-" + host,
                            modules=[['Match "^/%s/(?P<name>%s[^/]*)$"' % (prefix, host[0])]],
                            extra=network_sender(port, user, password))
                   for host, user, password in (("a", "host-a", "secret-a"), ("b", "host-b", "secret-b"),
                                                ("rogue", "host-a", "not-the-secret"))]
        with central:
            for s in senders:
                s.start()
            try:
                for host, name in (("ccg-a", "a1"), ("ccg-b", "b1")):
                    carbon.wait_for_metric("%s.container-cgroup-%s.cpu-total" % (host, name), 30)
                    carbon.wait_for_metric("%s.container-cgroup-%s.if_octets-eth0.rx" % (host, name), 30)
                time.sleep(3)       # the stranger has sent several intervals by now
                assert [s for s in senders if not s.alive()] == []
                landed = sorted(set(f.split(".")[0] for f in carbon.whisper_files()))
                log = central.log()
            finally:
                for s in senders:
                    s.stop()
        print("hosts in whisper: %s; central's log about the stranger: %s"
              % (landed, [l for l in log.splitlines() if "network" in l.lower()][:3]))
        assert landed == ["ccg-a", "ccg-b"], landed
        assert re.search(r"(?i)hash mismatch|decrypt|unknown user|ignor", log), log


# -- make graphite ---------------------------------------------------------------------------------------------

def test_make_graphite_shows_a_container_in_graphite_web(tmp_path):
    """What ``make graphite`` runs (``python -m ccg_lab.graphite BUILD CONF``), with a test configuration in
    place of the demo's: the container's values reach graphite-web at the address it prints, and SIGTERM
    stops carbon, graphite-web and collectd."""
    with CgroupTree("ccg-graphite-%s" % secrets.token_hex(4)) as tree:
        tree.container("app").spawn(cpu_seconds=0.1).wait_ready()
        conf = write_config(str(tmp_path / "collectd"), interval=1,
                            modules=[['Match "^/%s/(?P<name>[^/]+)$"' % re.escape(tree.prefix)]]).conf
        build = str(tmp_path / "build")
        run = subprocess.Popen([os.path.join(CHECKOUT, ".venv", "bin", "python"), "-m", "ccg_lab.graphite",
                                build, conf], cwd=CHECKOUT, stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
        try:
            lines = [run.stdout.readline() for _ in range(3)]
            url = re.search(r"(http://127\.0\.0\.1:\d+)/render", lines[1]).group(1)
            target = "%s.container-cgroup-app.cpu-total" % HOSTNAME
            wanted = os.path.join(build, "graphite", "carbon", "whisper", HOSTNAME, "container-cgroup-app",
                                  "cpu-total.wsp")
            wait_until(lambda: os.path.exists(wanted), 30, what=wanted)

            def rendered():
                with urllib.request.urlopen("%s/render?target=%s&format=json&from=-5min" % (url, target)) as r:
                    series = json.loads(r.read())
                return [v for s in series for v, _ in s["datapoints"] if v is not None]
            points = wait_until(rendered, 30, what="%s from graphite-web" % target)
            print("make graphite: %s at %s: %s" % (target, url, points[-3:]))
        finally:
            os.kill(run.pid, signal.SIGTERM)
            rc = run.wait(timeout=60)
        assert rc == 0
        left = []
        for pid in os.listdir("/proc"):
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    if str(tmp_path).encode() in f.read():
                        left.append(pid)
            except OSError:
                pass
        assert not left, "processes of the run left: %s" % left
