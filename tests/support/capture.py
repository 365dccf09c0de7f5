#!/usr/bin/env python3
"""Capture cgroups of a live system into a fixture tree readable with ``--root``.

    python3 -m tests.support.capture capture DIR CGROUP [CGROUP ...] [--pid PID ...]
                                 [--docker-data-root D] [--containers-storage S]
        Copies /proc/self/mountinfo (only the cgroup mounts and the root file
        system line), /proc/cgroups and, for each CGROUP path (as in
        /proc/<pid>/cgroup, e.g. /docker/<id>), every regular readable file of
        that cgroup's directory in every mounted hierarchy, under DIR/proc/...
        and DIR/<mount point>/... (mount points as in mountinfo, prefixed by
        DIR).  Parent directories are created as plain directories so that a
        walk finds the cgroups.  Files that cannot be read (write-only ones such
        as cgroup.event_control or memory.force_empty) are skipped.  --pid
        also copies /proc/PID/cgroup.  Runtime state that names containers is
        copied when present: <docker root>/containers/<id>/config.v2.json for
        each 64-hex id in a captured path, and the captured ids' entries of
        <containers storage>/*-containers/containers.json.

    python3 -m tests.support.capture sample DIR
        Rebuilds tests/fixtures/hybrid-debian12 on a hybrid host without Docker
        or LXC: creates /docker/<random 64 hex>, /lxc.payload.web and
        /lxc.monitor.web in the cpu, cpuacct, memory, pids and blkio v1
        hierarchies and in the cgroup2 mount, runs a process in each that burns
        a little CPU and touches some memory, writes a Docker-format
        config.v2.json naming the docker one "web1", captures, and removes
        every process and cgroup it made (also on failure).  Refuses to run if
        any of those cgroups already exists.  Facts measured by the processes
        themselves go to DIR/CAPTURE.json for the tests to compare against.

Needs root.  Only the standard library: it must run on a bare machine.
"""

import argparse
import datetime
import errno
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

_HEX64 = re.compile(r"[0-9a-f]{64}")
_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field):
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def cgroup_mounts(mountinfo):
    """[(fstype, options, root, mount point)] of the cgroup mounts in a mountinfo text
    (a parser of its own, so fixtures do not depend on the code they test)."""
    out = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        fstype = fields[sep + 1]
        if fstype in ("cgroup", "cgroup2"):
            out.append((fstype, fields[sep + 3].split(","), _unescape(fields[3]), _unescape(fields[4])))
    return out


def trimmed_mountinfo(mountinfo):
    """The cgroup lines and the root file system line, as they are."""
    keep = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        if fields[sep + 1] in ("cgroup", "cgroup2") or fields[4] == "/":
            keep.append(line)
    return "\n".join(keep) + "\n"


def _write(dest, path, data):
    target = dest + path
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as f:
        f.write(data)


def _read(path):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def _cgroup_dir(mount_root, mount_point, cgroup_path):
    root = mount_root.rstrip("/")
    if root:
        if cgroup_path != root and not cgroup_path.startswith(root + "/"):
            return None
        cgroup_path = cgroup_path[len(root):]
    return mount_point.rstrip("/") + cgroup_path.rstrip("/") if cgroup_path.strip("/") else mount_point


def capture(dest, cgroups, pids=(), docker_root="/var/lib/docker",
            storage_root="/var/lib/containers/storage", proc="/proc"):
    """Copy what --root needs for ``cgroups`` into ``dest``.  Returns the list of files written."""
    dest = os.path.abspath(dest).rstrip("/")
    written = []
    mountinfo = _read(proc + "/self/mountinfo").decode("utf-8", "surrogateescape")
    _write(dest, "/proc/self/mountinfo", trimmed_mountinfo(mountinfo).encode("utf-8", "surrogateescape"))
    _write(dest, "/proc/cgroups", _read(proc + "/cgroups"))
    written += ["/proc/self/mountinfo", "/proc/cgroups"]
    for pid in pids:
        _write(dest, "/proc/%d/cgroup" % pid, _read("%s/%d/cgroup" % (proc, pid)))
        written.append("/proc/%d/cgroup" % pid)
    for fstype, options, root, mount_point in cgroup_mounts(mountinfo):
        if fstype == "cgroup2" and root == "/":
            # hierarchy.load() reads the controllers available at the top.
            for name in ("cgroup.controllers", "cgroup.subtree_control"):
                try:
                    _write(dest, mount_point + "/" + name, _read(mount_point + "/" + name))
                    written.append(mount_point + "/" + name)
                except OSError:
                    pass
        for path in cgroups:
            directory = _cgroup_dir(root, mount_point, path)
            if directory is None or not os.path.isdir(directory):
                continue
            os.makedirs(dest + directory, exist_ok=True)
            for entry in sorted(os.scandir(directory), key=lambda e: e.name):
                if not entry.is_file(follow_symlinks=False):
                    continue
                try:
                    data = _read(entry.path)
                except OSError:
                    continue        # write-only (EINVAL), EACCES, EOPNOTSUPP...
                _write(dest, entry.path, data)
                written.append(entry.path)
    ids = sorted(set(m.group(0) for p in cgroups for m in _HEX64.finditer(p)))
    for cid in ids:
        src = "%s/containers/%s/config.v2.json" % (docker_root, cid)
        if os.path.isfile(src):
            target = "/var/lib/docker/containers/%s/config.v2.json" % cid
            _write(dest, target, _read(src))
            written.append(target)
    if os.path.isdir(storage_root):
        for d in sorted(os.listdir(storage_root)):
            src = os.path.join(storage_root, d, "containers.json")
            if not d.endswith("-containers") or not os.path.isfile(src):
                continue
            entries = [e for e in json.loads(_read(src)) if e.get("id") in ids]
            if entries:
                target = "/var/lib/containers/storage/%s/containers.json" % d
                _write(dest, target, json.dumps(entries).encode())
                written.append(target)
    return written


# -- the hybrid-debian12 sample ----------------------------------------------

SAMPLE_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids", "blkio")

# Runs in the cgroups: waits for "go", burns CPU, touches memory, optionally
# writes and reads back a file (page cache), reports what it measured itself,
# then idles until its stdin closes.
WORKER = r"""
import json, os, sys, time
burn_s, mib, path = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sys.stdin.readline()
t0 = time.process_time_ns()
n = 0
while time.process_time_ns() - t0 < burn_s * 1e9:
    n += 1
buf = bytearray(mib << 20)
for i in range(0, len(buf), 4096):
    buf[i] = 1
file_bytes = 0
if path:
    data = os.urandom(4 << 20)
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    with open(path, "rb") as f:
        file_bytes = len(f.read())
burn = time.process_time_ns() - t0
print(json.dumps({"in_cgroup_cpu_ns": burn, "process_cpu_ns": time.process_time_ns(),
                  "touched_bytes": len(buf), "file_bytes": file_bytes}), flush=True)
sys.stdin.read()
"""


def docker_config_v2(cid, name, pid, created):
    """A container's config.v2.json as dockerd (moby's container.Container) writes it."""
    return {
        "StreamConfig": {},
        "State": {"Running": True, "Paused": False, "Restarting": False, "OOMKilled": False,
                  "RemovalInProgress": False, "Dead": False, "Pid": pid, "ExitCode": 0, "Error": "",
                  "StartedAt": created, "FinishedAt": "0001-01-01T00:00:00Z", "Health": None},
        "ID": cid,
        "Created": created,
        "Managed": False,
        "Path": "python3",
        "Args": ["-c", "..."],
        "Config": {"Hostname": cid[:12], "Domainname": "", "User": "", "AttachStdin": False,
                   "AttachStdout": False, "AttachStderr": False, "Tty": False, "OpenStdin": False,
                   "StdinOnce": False,
                   "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["python3", "-c", "..."], "Image": "debian:12", "Volumes": None,
                   "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": {}},
        "Image": "sha256:" + hashlib.sha256(b"debian:12").hexdigest(),
        "ImageManifest": None,
        "NetworkSettings": {"Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": False,
                            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
                            "Networks": {"none": {"IPAMConfig": None, "Links": None, "Aliases": None,
                                                  "MacAddress": "", "DriverOpts": None,
                                                  "NetworkID": "", "EndpointID": "", "Gateway": "",
                                                  "IPAddress": "", "IPPrefixLen": 0,
                                                  "IPv6Gateway": "", "GlobalIPv6Address": "",
                                                  "GlobalIPv6PrefixLen": 0, "DNSNames": None,
                                                  "IPAMOperational": False}},
                            "Service": None, "Ports": {}, "SecondaryIPAddresses": None,
                            "SecondaryIPv6Addresses": None, "IsAnonymousEndpoint": False,
                            "HasSwarmEndpoint": False},
        "LogPath": "/var/lib/docker/containers/%s/%s-json.log" % (cid, cid),
        "Name": "/" + name,
        "Driver": "overlay2",
        "OS": "linux",
        "RestartCount": 0,
        "HasBeenStartedBefore": True,
        "HasBeenManuallyStopped": False,
        "MountPoints": {},
        "SecretReferences": None,
        "ConfigReferences": None,
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "docker-default",
        "SeccompProfile": "",
        "NoNewPrivileges": False,
        "HostnamePath": "/var/lib/docker/containers/%s/hostname" % cid,
        "HostsPath": "/var/lib/docker/containers/%s/hosts" % cid,
        "ShmPath": "/var/lib/docker/containers/%s/mounts/shm" % cid,
        "ResolvConfPath": "/var/lib/docker/containers/%s/resolv.conf" % cid,
        "LocalLogCacheMeta": {"HaveNotifyEnabled": False},
    }


def _rmdir(path):
    for _ in range(50):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            time.sleep(0.1)     # the last task is still leaving the cgroup
    os.rmdir(path)


def sample(dest):
    mounts = cgroup_mounts(_read("/proc/self/mountinfo").decode())
    bases = {}
    for fstype, options, root, mount_point in mounts:
        if root != "/":
            continue
        if fstype == "cgroup2":
            bases.setdefault("unified", mount_point)
        for c in SAMPLE_CONTROLLERS:
            if fstype == "cgroup" and c in options:
                bases.setdefault(c, mount_point)
    missing = [c for c in SAMPLE_CONTROLLERS + ("unified",) if c not in bases]
    if missing:
        sys.exit("capture.py sample: needs a hybrid host; not mounted: %s" % ", ".join(missing))
    roots = sorted(set(bases.values()))
    cid = hashlib.sha256(os.urandom(32)).hexdigest()
    docker, payload, monitor = "/docker/" + cid, "/lxc.payload.web", "/lxc.monitor.web"
    for base in roots:
        for top in ("/docker", payload, monitor):
            if os.path.exists(base + top):
                sys.exit("capture.py sample: %s%s exists (a real runtime?); refusing" % (base, top))
    if os.path.exists(dest):
        sys.exit("capture.py sample: %s exists; remove it first" % dest)
    work = tempfile.mkdtemp(prefix="ccg-capture-")
    created, procs = [], []
    try:
        for base in roots:
            for path in ("/docker", docker, payload, monitor):
                os.mkdir(base + path)
                created.append(base + path)
        # A CPU quota on the docker one (so the throttling counters move), a
        # memory and a tasks limit on the LXC one (so limits are dispatched).
        with open(bases["cpu"] + docker + "/cpu.cfs_quota_us", "w") as f:
            f.write("50000")
        with open(bases["memory"] + payload + "/memory.limit_in_bytes", "w") as f:
            f.write(str(256 << 20))
        with open(bases["pids"] + payload + "/pids.max", "w") as f:
            f.write("64")

        def start(path, args):
            p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            procs.append(p)
            for base in roots:
                with open(base + path + "/cgroup.procs", "w") as f:
                    f.write(str(p.pid))
            return p

        file_path = os.path.join(work, "cache.bin")
        workers = {}
        for key, path, args in (
                ("docker", docker, ["0.6", "24", file_path]),
                ("lxc", payload, ["0.15", "8", ""])):
            p = start(path, [sys.executable, "-c", WORKER] + args)
            p.stdin.write(b"go\n")
            p.stdin.flush()
            facts = json.loads(p.stdout.readline())
            facts.update(cgroup=path, pid=p.pid, tasks=1)
            workers[key] = facts
        start(monitor, [sys.executable, "-c", "import sys; sys.stdin.read()"])
        workers["docker"].update(id=cid, name="web1", cpu_cfs_quota_us=50000, cpu_cfs_period_us=100000)
        workers["lxc"].update(name="web", memory_limit_in_bytes=256 << 20, pids_max=64)

        created_at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
        docker_root = os.path.join(work, "docker")
        config = os.path.join(docker_root, "containers", cid, "config.v2.json")
        os.makedirs(os.path.dirname(config))
        with open(config, "w") as f:
            json.dump(docker_config_v2(cid, "web1", workers["docker"]["pid"], created_at), f,
                      separators=(",", ":"))
        capture(dest, [docker, payload, monitor], pids=[workers["docker"]["pid"]],
                docker_root=docker_root, storage_root=os.path.join(work, "no-storage"))
        with open(os.path.join(dest, "CAPTURE.json"), "w") as f:
            json.dump({"kernel": platform.release(), "captured_at": created_at,
                       "clk_tck": os.sysconf("SC_CLK_TCK"), "page_size": os.sysconf("SC_PAGE_SIZE"),
                       "cpus": os.cpu_count(), "containers": workers,
                       "ignored": [monitor]}, f, indent=1, sort_keys=True)
            f.write("\n")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for path in reversed(created):
            _rmdir(path)
        shutil.rmtree(work, ignore_errors=True)
    return dest


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("capture", help="capture the named cgroups")
    c.add_argument("dest")
    c.add_argument("cgroups", nargs="+", metavar="CGROUP")
    c.add_argument("--pid", type=int, action="append", default=[])
    c.add_argument("--docker-data-root", default="/var/lib/docker")
    c.add_argument("--containers-storage", default="/var/lib/containers/storage")
    s = sub.add_parser("sample", help="build, capture and remove the hybrid-debian12 sample")
    s.add_argument("dest")
    args = p.parse_args(argv)
    if args.cmd == "capture":
        for f in capture(args.dest, args.cgroups, args.pid, args.docker_data_root, args.containers_storage):
            print(f)
    else:
        print(sample(args.dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
