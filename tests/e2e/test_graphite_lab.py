"""The Graphite lab itself (ccg_lab/graphite.py): Debian's carbon-cache, whisper tools and
graphite-web, private to tmp_path, on 127.0.0.1.

A few points of ``ccg-test.container-cgroup-x.cpu-total`` and of an ``if_octets-eth0`` rx/tx pair go to
carbon's line receiver; they come back exactly from the whisper files (whisper-fetch) and from
graphite-web's render API, a PNG is rendered, ``/metrics/find`` lists them as Grafana's template variables
would; afterwards no process of the lab is left and nothing was written outside tmp_path.

Deliberately no skip: needs root's tier and the Debian packages ``make deps`` installs (graphite-carbon,
graphite-web, python3-whisper).
"""

import os
import time

from tests.support import CHECKOUT
from ccg_lab.graphite import Carbon, GraphiteWeb, port_open

BASE = "ccg-test.container-cgroup-x"
CPU = BASE + ".cpu-total"
RX, TX = BASE + ".if_octets-eth0.rx", BASE + ".if_octets-eth0.tx"
PNG = b"\x89PNG\r\n\x1a\n"

# Where Debian's Graphite writes when left to its own configuration (and where stray pid or log files of
# twistd would go): none of it may change while the lab runs.
WATCHED_TREES = ("/var/lib/graphite", "/var/log/carbon", "/var/log/graphite", "/etc/carbon", "/etc/graphite",
                 "/usr/share/graphite-web", "/usr/lib/python3/dist-packages/carbon",
                 "/usr/lib/python3/dist-packages/graphite", "/usr/lib/python3/dist-packages/twisted/plugins",
                 "/usr/lib/python3/dist-packages/whisper.py", "/var/cache/fontconfig")
WATCHED_DIRS = ("/run", "/var/run", "/tmp", "/var/tmp", CHECKOUT, os.path.expanduser("~"))
NAMES = ("carbon", "graphite", "whisper", "twistd", "django")


def outside_state():
    """{path: (mtime_ns, size)} of the watched trees, and of the watched directories' entries whose names
    mention carbon, graphite, whisper, twistd or django."""
    state = {}

    def note(path):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        state[path] = (st.st_mtime_ns, st.st_size)
    for top in WATCHED_TREES:
        note(top)
        for directory, dirs, files in os.walk(top):
            for name in dirs + files:
                note(os.path.join(directory, name))
    for top in WATCHED_DIRS:
        try:
            names = os.listdir(top)
        except FileNotFoundError:
            continue
        for name in names:
            if any(word in name.lower() for word in NAMES):
                note(os.path.join(top, name))
    return state


def processes_under(path):
    """PIDs of processes whose command line or working directory is under ``path``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmdline = f.read().decode(errors="replace")
            cwd = os.readlink("/proc/%s/cwd" % pid)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if path in cmdline or cwd == path or cwd.startswith(path + "/"):
            found.append(int(pid))
    return found


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_carbon_whisper_and_graphite_web_round_trip(tmp_path):
    work = str(tmp_path)
    before = outside_state()
    t0 = time.monotonic()
    now = int(time.time())
    stamps = [now - 40, now - 30, now - 20]
    sent = {CPU: [1.5, 2.25, 3.0], RX: [100.0, 200.0, 300.0], TX: [10.0, 20.0, 30.0]}
    expected = {path: list(zip(stamps, vals)) for path, vals in sent.items()}
    timing = {}

    carbon = Carbon(os.path.join(work, "carbon"))
    web = GraphiteWeb(os.path.join(work, "web"), carbon.whisper_dir)
    with carbon:
        timing["carbon up"] = time.monotonic() - t0
        carbon.send(["%s %r %d" % (path, v, ts) for path, vals in sent.items() for ts, v in zip(stamps, vals)])
        for path in sent:
            carbon.wait_for_metric(path, timeout=15, points=3)
        timing["points in whisper"] = time.monotonic() - t0

        # whisper: exactly the files and the points sent, with the retention asked for.
        assert sorted(carbon.whisper_files()) == sorted(sent)
        for path in sent:
            assert carbon.fetch(path, 600) == expected[path], path
        archives = [(a["secondsPerPoint"], a["points"]) for a in carbon.info(CPU)["archives"]]
        assert archives == [(1, 3600), (60, 1440)]

        with web:
            timing["graphite-web up"] = time.monotonic() - t0
            # render: the same values at the same timestamps.
            series = web.render_json(CPU, frm="-10min")
            assert [s["target"] for s in series] == [CPU]
            assert [(ts, v) for v, ts in series[0]["datapoints"] if v is not None] == expected[CPU]
            pair = web.render_json(BASE + ".if_octets-eth0.*", frm="-10min")
            assert sorted(s["target"] for s in pair) == [RX, TX]
            for s in pair:
                assert [(ts, v) for v, ts in s["datapoints"] if v is not None] == expected[s["target"]]

            png = web.render_png([CPU, RX, TX], str(tmp_path / "graphite-lab.png"), frm="-5min",
                                 lineMode="connected", title="graphite lab")
            with open(png, "rb") as f:
                head = f.read(8)
            assert head == PNG
            print("PNG saved: %s (%d bytes)" % (png, os.path.getsize(png)))

            # What Grafana asks for a template variable.
            found = web.find("ccg-test.*")
            assert [(m["text"], m["id"], m["leaf"]) for m in found] == \
                [("container-cgroup-x", BASE, 0)]
            leaves = web.find(BASE + ".if_octets-eth0.*")
            assert sorted((m["text"], m["leaf"]) for m in leaves) == [("rx", 1), ("tx", 1)]
            assert web.exceptions() == "", web.exceptions()     # CarbonLink and the like: nothing failed
            timing["queries done"] = time.monotonic() - t0
            web_pid = web.pid
        assert gone(web_pid) and not port_open(web.port)
        carbon_pid = carbon.pid
    timing["stopped"] = time.monotonic() - t0

    assert gone(carbon_pid) and not port_open(carbon.port) and not port_open(carbon.query_port)
    assert processes_under(work) == []
    after = outside_state()
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    assert changed == [], "written outside tmp_path: %s" % changed
    print("lab timing: " + ", ".join("%s %.2fs" % kv for kv in timing.items()))
