"""A small CRI v1 client (``runtime.v1.RuntimeService``) for driving a real containerd as the kubelet does.

gRPC through grpcio; the protobuf messages are encoded by hand from the CRI API's published proto
(k8s.io/cri-api ``pkg/apis/runtime/v1/api.proto``), only the fields the tests need.  Each message is a
list of (field number, value) built by the functions below; the proto names are in the comments.
"""

import json

import grpc

SERVICE = "/runtime.v1.RuntimeService/"


# -- the protobuf wire format --------------------------------------------------------------------------

def _varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode(fields):
    """[(number, value)] -> bytes.  str/bytes/list-of-fields: length-delimited; int/bool: varint; a
    dict: a protobuf map<string, string> (repeated entries of key = 1, value = 2)."""
    out = bytearray()
    for number, value in fields:
        if value is None:
            continue
        if isinstance(value, dict):
            for k, v in value.items():
                out += _varint(number << 3 | 2) + _delimited(encode([(1, k), (2, v)]))
        elif isinstance(value, bool) or isinstance(value, int):
            out += _varint(number << 3 | 0) + _varint(int(value))
        elif isinstance(value, str):
            out += _varint(number << 3 | 2) + _delimited(value.encode())
        elif isinstance(value, bytes):
            out += _varint(number << 3 | 2) + _delimited(value)
        else:                           # a nested message
            out += _varint(number << 3 | 2) + _delimited(encode(value))
    return bytes(out)


def _delimited(data):
    return _varint(len(data)) + data


def decode(data):
    """bytes -> {number: [raw values]} (varints as int, length-delimited as bytes)."""
    fields, i = {}, 0
    while i < len(data):
        key, i = _read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(data, i)
        elif wire == 2:
            size, i = _read_varint(data, i)
            value, i = data[i:i + size], i + size
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
        fields.setdefault(number, []).append(value)
    return fields


def _read_varint(data, i):
    n = shift = 0
    while True:
        byte = data[i]
        i += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return n, i


def _string(fields, number, default=""):
    return fields[number][0].decode() if number in fields else default


def _map(fields, number):
    out = {}
    for entry in fields.get(number, ()):
        kv = decode(entry)
        out[_string(kv, 1)] = _string(kv, 2)
    return out


# -- messages ------------------------------------------------------------------------------------------

NODE, POD = 2, 0    # NamespaceMode


def pod_sandbox_config(name, namespace, uid, cgroup_parent, attempt=0, labels=None, annotations=None,
                       log_directory=None, host_network=False):
    return [
        (1, [(1, name), (2, uid), (3, namespace), (4, attempt)]),      # metadata: PodSandboxMetadata
        (2, name),                                                     # hostname
        (3, log_directory),                                            # log_directory
        (6, labels or {}),                                             # labels
        (7, annotations or {}),                                        # annotations
        (8, [(1, cgroup_parent),                                       # linux: LinuxPodSandboxConfig.cgroup_parent
             (2, [(1, [(1, NODE if host_network else POD),             # security_context.namespace_options.network
                       (2, 1)])])]),                                   #   .pid = CONTAINER, as the kubelet sets it
    ]


def container_config(name, image, command, args=(), attempt=0, labels=None, annotations=None, log_path=None,
                     envs=None):
    return [
        (1, [(1, name), (2, attempt)]),                                # metadata: ContainerMetadata
        (2, [(1, image)]),                                             # image: ImageSpec
    ] + [(3, c) for c in command] + [(4, a) for a in args] + [        # command, args
        (6, [(1, k), (2, v)]) for k, v in (envs or {}).items()         # envs: KeyValue
    ] + [
        (9, labels or {}),                                             # labels
        (10, annotations or {}),                                       # annotations
        (11, log_path),                                                # log_path
    ]


class RuntimeService(object):
    """``runtime.v1.RuntimeService`` on a unix socket."""

    def __init__(self, socket, timeout=60):
        self.channel = grpc.insecure_channel("unix://" + socket)
        self.timeout = timeout

    def close(self):
        self.channel.close()

    def _call(self, method, fields):
        call = self.channel.unary_unary(SERVICE + method, request_serializer=encode,
                                        response_deserializer=decode)
        return call(fields, timeout=self.timeout)

    def version(self):
        reply = self._call("Version", [(1, "v1")])                     # VersionRequest.version
        return {"runtime_name": _string(reply, 2), "runtime_version": _string(reply, 3),
                "runtime_api_version": _string(reply, 4)}

    def run_pod_sandbox(self, config):
        return _string(self._call("RunPodSandbox", [(1, config)]), 1)  # -> pod_sandbox_id

    def stop_pod_sandbox(self, pod_id):
        self._call("StopPodSandbox", [(1, pod_id)])

    def remove_pod_sandbox(self, pod_id):
        self._call("RemovePodSandbox", [(1, pod_id)])

    def create_container(self, pod_id, config, sandbox_config):
        reply = self._call("CreateContainer", [(1, pod_id), (2, config), (3, sandbox_config)])
        return _string(reply, 1)                                       # -> container_id

    def start_container(self, cid):
        self._call("StartContainer", [(1, cid)])

    def stop_container(self, cid, timeout=0):
        self._call("StopContainer", [(1, cid), (2, timeout)])

    def remove_container(self, cid):
        self._call("RemoveContainer", [(1, cid)])

    def container_status(self, cid):
        """{"id", "name", "attempt", "state" (0 created, 1 running, 2 exited), "pid", "labels",
        "annotations"}; the PID from the verbose info containerd gives."""
        reply = self._call("ContainerStatus", [(1, cid), (2, True)])
        status = decode(reply[1][0])
        meta = decode(status[2][0]) if 2 in status else {}
        info = _map(reply, 2).get("info")
        return {"id": _string(status, 1), "name": _string(meta, 1), "attempt": meta.get(2, [0])[0],
                "state": status.get(3, [0])[0], "exit_code": status.get(7, [0])[0],
                "labels": _map(status, 12), "annotations": _map(status, 13),
                "pid": json.loads(info).get("pid") if info else None}

    def list_containers(self):
        reply = self._call("ListContainers", [])
        out = []
        for raw in reply.get(1, ()):
            c = decode(raw)
            out.append({"id": _string(c, 1), "pod_sandbox_id": _string(c, 2), "state": c.get(6, [0])[0]})
        return out

    def list_pod_sandbox(self):
        reply = self._call("ListPodSandbox", [])
        return [{"id": _string(decode(raw), 1)} for raw in reply.get(1, ())]
