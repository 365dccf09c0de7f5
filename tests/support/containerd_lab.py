"""A private containerd (Debian's 1.6) driven through its CRI, as the kubelet drives it.

Everything is the test's own: containerd's root, state, sockets and CRI state under ``workdir``; a
network namespace of the test (containerd runs in it through ``nsenter --net``, so the CNI ``ptp``
plugin puts the pods' host-side veths there, with addresses from 192.0.2.0/24, and pods' own
namespaces are kept under containerd's state directory); pod cgroups under ``/<prefix>/kubepods/...``
(cgroupfs driver, absolute ``cgroup_parent`` as the kubelet passes it); images built here from
busybox-static and imported with ``ctr`` (no registry).  ``close()`` removes every pod through the
CRI, ends containerd and the shims it started (by PID, found by the socket in their command line),
unmounts what is left under ``workdir``, removes the cgroups under the prefix and the namespace.

Usage::

    with ContainerdLab(tmp_path, prefix) as lab:
        pod = lab.run_pod("web-1", "shop", qos="burstable")
        cid = lab.run_container(pod, "app", ["/bin/sh", "-c", "..."])
        lab.cri.container_status(cid)["pid"]
"""

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
import uuid

from ccg_lab.synthetic import check_path, read_hierarchies
from tests.support import cri
from tests.support.kernelutil import umount_under

CONTAINERD = shutil.which("containerd") or "/usr/bin/containerd"
CTR = shutil.which("ctr") or "/usr/bin/ctr"
BUSYBOX = "/bin/busybox"
CNI_BIN = "/usr/lib/cni"
PAUSE_IMAGE = "ccg.test/pause:1"
BUSYBOX_IMAGE = "ccg.test/busybox:1"
SUBNET, GATEWAY = "192.0.2.0/24", "192.0.2.1"
APPLETS = ("sh", "sleep", "cat", "dd", "ping", "ip", "nc", "true")


def available():
    """Why this machine cannot run the lab, or None."""
    for path in (CONTAINERD, CTR, BUSYBOX, CNI_BIN + "/ptp", CNI_BIN + "/host-local", CNI_BIN + "/loopback",
                 "/usr/bin/containerd-shim-runc-v2"):
        if not os.path.exists(path):
            return "%s is not installed (make deps installs containerd, containernetworking-plugins)" % path
    return None


def _config(top):
    return """\
version = 2
root = "{t}/root"
state = "{t}/state"
oom_score = 0

[grpc]
  address = "{t}/containerd.sock"
[ttrpc]
  address = "{t}/containerd.sock.ttrpc"
[debug]
  address = "{t}/debug.sock"
  level = "info"
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{t}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  netns_mounts_under_state_dir = true
  # The sandbox's oom_score_adj -998 needs CAP_SYS_RESOURCE, which this machine's bounding set lacks.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{t}/cni"
""".format(t=top, pause=PAUSE_IMAGE, cni_bin=CNI_BIN)


def _cni_conflist(top):
    return {"cniVersion": "0.4.0", "name": "ccg-test", "plugins": [
        {"type": "ptp", "ipMasq": False,
         "ipam": {"type": "host-local", "subnet": SUBNET, "gateway": GATEWAY, "dataDir": top + "/cni-ipam",
                  "routes": [{"dst": "0.0.0.0/0"}]}}]}


def _image_archive(name, entrypoint):
    """A docker-archive tarball (``manifest.json``, config, one layer) of busybox-static and its applets."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        for d in ("bin", "proc", "dev", "sys", "tmp", "etc"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            t.addfile(info)
        t.add(BUSYBOX, "bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo("bin/" + applet)
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
            t.addfile(info)
    layer = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Entrypoint": list(entrypoint), "Env": ["PATH=/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [name], "Layers": ["layer.tar"]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        for member, data in (("layer.tar", layer), (config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


class ContainerdLab(object):

    def __init__(self, workdir, prefix, timeout=60):
        self.top = os.path.join(str(workdir), "containerd")
        self.prefix = prefix.strip("/")
        check_path("/" + self.prefix)
        self.netns = "ccg-k8s-" + uuid.uuid4().hex[:8]
        self.socket = self.top + "/containerd.sock"
        self.state = self.top + "/state"
        self.timeout = timeout
        self.daemon = None
        self.cri = None
        self.pods = []          # (pod id, sandbox config) in creation order
        self.containers = []

    # -- start ----------------------------------------------------------------------------------------

    def start(self):
        os.makedirs(self.top + "/cni")
        with open(self.top + "/config.toml", "w") as f:
            f.write(_config(self.top))
        with open(self.top + "/cni/10-ccg.conflist", "w") as f:
            json.dump(_cni_conflist(self.top), f)
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        subprocess.run(["ip", "netns", "exec", self.netns, "ip", "link", "set", "lo", "up"], check=True)
        self.log = open(self.top + "/containerd.log", "w")
        self.daemon = subprocess.Popen(
            ["nsenter", "--net=/run/netns/" + self.netns, CONTAINERD, "--config", self.top + "/config.toml"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, env=_clean_env())
        deadline = time.monotonic() + self.timeout
        while not os.path.exists(self.socket):
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("containerd did not start:\n" + self.daemon_log())
            time.sleep(0.1)
        self.cri = cri.RuntimeService(self.socket, timeout=self.timeout)
        while True:
            try:
                self.cri.version()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError("containerd's CRI did not answer:\n" + self.daemon_log())
                time.sleep(0.2)
        self.import_image(PAUSE_IMAGE, ["/bin/sleep", "2147483647"])
        self.import_image(BUSYBOX_IMAGE, ["/bin/sh"])
        return self

    def daemon_log(self):
        with open(self.top + "/containerd.log") as f:
            return f.read()[-4000:]

    def ctr(self, *args, **kw):
        return subprocess.run([CTR, "--address", self.socket, "-n", "k8s.io"] + list(args),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=self.timeout, **kw)

    def import_image(self, name, entrypoint):
        res = self.ctr("images", "import", "-", input=_image_archive(name, entrypoint))
        if res.returncode != 0:
            raise RuntimeError("ctr images import %s: %s" % (name, res.stdout.decode()))

    # -- pods and containers ------------------------------------------------------------------------

    def pod_cgroup(self, uid, qos):
        """The cgroup_parent the kubelet (cgroupfs driver) gives a pod: ``kubepods[/<qos>]/pod<uid>``."""
        return "/%s/kubepods/%spod%s" % (self.prefix, "" if qos == "guaranteed" else qos + "/", uid)

    def run_pod(self, name, namespace, qos="burstable", uid=None, labels=None, attempt=0):
        uid = uid or str(uuid.uuid4())
        os.makedirs(self.top + "/logs/" + uid, exist_ok=True)
        config = cri.pod_sandbox_config(name, namespace, uid, self.pod_cgroup(uid, qos), attempt=attempt,
                                        labels=dict(labels or {}, **{"io.kubernetes.pod.name": name,
                                                                     "io.kubernetes.pod.namespace": namespace,
                                                                     "io.kubernetes.pod.uid": uid}),
                                        log_directory=self.top + "/logs/" + uid)
        pod_id = self.cri.run_pod_sandbox(config)
        self.pods.append((pod_id, config))
        return pod_id

    def sandbox_config(self, pod_id):
        return dict(self.pods)[pod_id]

    def run_container(self, pod_id, name, command, attempt=0, labels=None):
        config = cri.container_config(name, BUSYBOX_IMAGE, command, attempt=attempt, labels=labels,
                                      log_path="%s_%d.log" % (name, attempt))
        cid = self.cri.create_container(pod_id, config, self.sandbox_config(pod_id))
        self.containers.append(cid)
        self.cri.start_container(cid)
        return cid

    def pid(self, cid):
        return self.cri.container_status(cid)["pid"]

    def sandbox_pid(self, pod_id):
        """The pause process: containerd's task for the sandbox id (``ctr task ls``)."""
        res = self.ctr("tasks", "ls")
        for line in res.stdout.decode().splitlines()[1:]:
            parts = line.split()
            if parts and parts[0] == pod_id:
                return int(parts[1])
        return None

    def bundle(self, cid):
        """The OCI bundle's config.json of a container or sandbox, as containerd wrote it."""
        with open("%s/io.containerd.runtime.v2.task/k8s.io/%s/config.json" % (self.state, cid)) as f:
            return json.load(f)

    # -- teardown -----------------------------------------------------------------------------------

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.cri is not None:
            for cid in reversed(self.containers):
                for call in (self.cri.stop_container, self.cri.remove_container):
                    try:
                        call(cid)
                    except Exception:
                        pass
            for pod_id, _ in reversed(self.pods):
                for call in (self.cri.stop_pod_sandbox, self.cri.remove_pod_sandbox):
                    try:
                        call(pod_id)
                    except Exception:
                        pass
            self.cri.close()
            self.cri = None
        shims = self._shim_pids()
        if self.daemon is not None:
            _stop(self.daemon.pid, self.daemon)
            self.log.close()
            self.daemon = None
        for pid in shims:
            _stop(pid)
        umount_under(self.top)
        self._remove_cgroups()
        subprocess.run(["ip", "netns", "del", self.netns], stderr=subprocess.DEVNULL)
        shutil.rmtree(self.top, ignore_errors=True)

    def _shim_pids(self):
        """containerd-shim-runc-v2 processes of this containerd (their command line names its socket)."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and self.socket.encode() in argv:
                found.append(int(entry))
        return found

    def _remove_cgroups(self):
        for mount in set(read_hierarchies().values()):
            top = check_path(os.path.join(mount, self.prefix))
            for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                for _ in range(50):
                    try:
                        os.rmdir(check_path(dirpath))
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.1)


def _clean_env():
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}


def _stop(pid, popen=None, timeout=15):
    """SIGTERM, then SIGKILL, to one process this lab started."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen is not None and popen.poll() is not None:
            return
        if popen is None and not os.path.exists("/proc/%d" % pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if popen is not None:
        popen.wait(10)
