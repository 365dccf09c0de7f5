"""identifiers.Naming: the one owner of plugin_instances (no root, no kernel)."""

from collectd_cgroups.containers import Container
from collectd_cgroups.identifiers import Naming, meta_groups, HOST_INTERFACE_META


def box(name, cid, inode=1, runtime="cgroup"):
    return Container(runtime, cid, name, "/x/" + cid, inode)


def one_pass(naming, containers):
    naming.begin_pass(containers)
    out = [naming.name(c) for c in containers]
    naming.end_pass(containers)
    return out


def test_a_collision_gets_the_short_id_and_names_stay_whatever_the_order():
    logs = []
    naming = Naming("{runtime}-{name}", warn_once=lambda key, msg, cause=None: logs.append(msg))
    a, b = box("web", "a" * 64), box("web", "b" * 64)
    assert one_pass(naming, [a, b]) == ["cgroup-web", "cgroup-web-bbbbbbbbbbbb"]
    assert len(logs) == 1 and "already taken" in logs[0]
    assert one_pass(naming, [b, a]) == ["cgroup-web-bbbbbbbbbbbb", "cgroup-web"]
    # A new container whose name a live one holds never takes it, even when found first.
    c = box("web", "c" * 64)
    assert one_pass(naming, [c, b, a]) == ["cgroup-web-cccccccccccc", "cgroup-web-bbbbbbbbbbbb", "cgroup-web"]


def test_names_that_graphite_would_merge_are_kept_apart_whatever_the_order():
    """write_graphite turns '.' into '_': ``eco.app.v1`` and ``eco_app_v1`` would be one series there.  The
    second of them gets the short id; both keep their own spelling (CSV and RRD keep the dots)."""
    naming = Naming("{runtime}-{name}")
    dotted, plain = box("eco.app.v1", "a" * 64), box("eco_app_v1", "b" * 64)
    assert one_pass(naming, [dotted, plain]) == ["cgroup-eco.app.v1", "cgroup-eco_app_v1-bbbbbbbbbbbb"]
    assert one_pass(naming, [plain, dotted]) == ["cgroup-eco_app_v1-bbbbbbbbbbbb", "cgroup-eco.app.v1"]
    # Started in the other order, the other one holds the name.
    naming = Naming("{runtime}-{name}")
    assert one_pass(naming, [plain]) == ["cgroup-eco_app_v1"]
    assert one_pass(naming, [dotted, plain]) == ["cgroup-eco.app.v1-aaaaaaaaaaaa", "cgroup-eco_app_v1"]
    # Once the holder goes, the name is free again.
    assert one_pass(naming, [dotted]) == ["cgroup-eco.app.v1-aaaaaaaaaaaa"]
    assert one_pass(naming, [box("eco.app.v1", "c" * 64)]) == ["cgroup-eco.app.v1"]


def test_instance_of_is_the_live_name_and_survives_until_the_container_is_no_longer_found():
    naming = Naming("{runtime}")
    a, b = box("one", "a" * 64), box("two", "b" * 64)
    one_pass(naming, [a, b])
    assert naming.instance_of(b) == "cgroup-bbbbbbbbbbbb"
    assert naming.instance_of(a) == "cgroup"
    # Never named yet: what a pass would give it now, without taking anything.
    c = box("three", "c" * 64)
    assert naming.instance_of(c) == "cgroup-cccccccccccc"
    one_pass(naming, [b])       # a went away: its name is free again
    assert naming.instance_of(c) == "cgroup"


def test_a_restart_under_the_same_path_keeps_the_name_and_a_rename_follows():
    naming = Naming("{runtime}-{name}")
    a = box("web", "a" * 64, inode=1)
    assert one_pass(naming, [a]) == ["cgroup-web"]
    restarted = box("web", "a" * 64, inode=2)
    other = box("web", "b" * 64)
    assert one_pass(naming, [other, restarted]) == ["cgroup-web-bbbbbbbbbbbb", "cgroup-web"]
    renamed = box("api", "a" * 64, inode=2)
    assert one_pass(naming, [renamed]) == ["cgroup-api"]


def test_a_replacement_found_in_the_pass_its_predecessor_left_takes_the_name():
    """A Kubernetes restart: a new id under the same name, the old container gone in the same interval
    (so the pass has as many containers as the last one)."""
    naming = Naming("{runtime}-{name}")
    old, other = box("app", "a" * 64), box("db", "d" * 64)
    assert one_pass(naming, [old, other]) == ["cgroup-app", "cgroup-db"]
    new = box("app", "c" * 64)
    assert one_pass(naming, [new, other]) == ["cgroup-app", "cgroup-db"]
    assert one_pass(naming, [other, new]) == ["cgroup-db", "cgroup-app"]


def test_meta_groups_adds_the_host_interface_only_to_interface_values():
    meta = {"runtime": "docker"}
    samples = [("memory", "usage", (1,)), ("if_octets", "eth0", (1, 2)), ("if_packets", "eth0", (3, 4)),
               ("if_octets", "eth1", (5, 6)), ("count", "pids", (7,))]
    assert meta_groups(samples, None, meta) == [(meta, samples)]
    groups = meta_groups(samples, {"eth0": "veth123"}, meta)
    assert [len(s) for _, s in groups] == [1, 2, 2]
    assert groups[0][0] is meta and groups[2][0] is meta
    assert groups[1][0] == dict(meta, **{HOST_INTERFACE_META: "veth123"})
    assert [x for _, s in groups for x in s] == samples


# -- Kubernetes fields and labels (issue 12) ------------------------------------------------

def pod_box(cid="d" * 64, labels=None, pod_labels=None):
    from collectd_cgroups.runtimes import kubernetes
    info = kubernetes.pod_container("shop", "web-0", "app", "u-1", "ccg.test/app:1", labels or {})
    pod = Container("k8spod", "u-1", "shop_web-0", "/kubepods/podu-1", 2,
                    kubernetes.sandbox("shop", "web-0", "u-1", labels=pod_labels or {}), qos="burstable")
    return Container("k8s", cid, info.name, "/kubepods/podu-1/" + cid, 3, info, pod, "burstable")


def test_kubernetes_fields_in_instance_format():
    c = pod_box(labels={"tier": "front"}, pod_labels={"app": "web", "tier": "back"})
    def fmt(f):
        naming = Naming(f)
        return one_pass(naming, [c])[0]
    assert fmt("{runtime}-{name}") == "k8s-shop_web-0_app"
    assert fmt("{namespace}.{pod}.{container}") == "shop.web-0.app"
    assert fmt("{image}") == "ccg.test_app:1"                       # '/' is not kept in identifiers
    assert fmt("{label:app}-{label:tier}") == "web-front"            # the container's own label wins
    assert fmt("{label:missing}") == "dddddddddddd"                  # empty: the short id
    assert fmt("{namespace}_{pod}") == "shop_web-0"
    plain = box("web", "e" * 64, runtime="docker")
    naming = Naming("{namespace}_{pod}")
    assert one_pass(naming, [plain]) == ["eeeeeeeeeeee"]             # only separators left: the short id


def test_kubernetes_meta_and_meta_labels():
    c = pod_box(pod_labels={"app": "web"})
    meta = c.meta(("app", "absent"))
    assert meta == {"runtime": "k8s", "container_id": "d" * 64, "cgroup": "/kubepods/podu-1/" + "d" * 64,
                    "namespace": "shop", "pod": "web-0", "container": "app", "pod_uid": "u-1",
                    "image": "ccg.test/app:1", "qos": "burstable", "app": "web"}
    assert "app" not in c.meta()
    assert c.pod.meta() == {"runtime": "k8spod", "container_id": "u-1", "cgroup": "/kubepods/podu-1",
                            "namespace": "shop", "pod": "web-0", "pod_uid": "u-1", "qos": "burstable"}


def test_instance_format_label_needs_a_key():
    import pytest
    from collectd_cgroups.identifiers import check_instance_format
    with pytest.raises(ValueError, match=r"\{label:KEY\}"):
        check_instance_format("{label}")
    check_instance_format("{label:app.kubernetes.io/name}")


# -- stable collision names (issue 15) -------------------------------------------------------

import itertools
import threading

from collectd_cgroups.identifiers import plugin_instance


def names_of(naming, containers):
    """{cgroup: instance} of one pass, in the order given."""
    return dict(zip((c.cgroup for c in containers), one_pass(naming, containers)))


def test_colliding_newcomers_get_the_same_names_in_every_order():
    a, b, c = box("web", "a" * 64, inode=30), box("web", "b" * 64, inode=10), box("web", "c" * 64, inode=20)
    results = [names_of(Naming("{runtime}-{name}"), list(order)) for order in itertools.permutations([a, b, c])]
    assert all(r == results[0] for r in results)
    # The oldest (lowest inode) keeps the bare name, the others get their short ids.
    assert results[0] == {b.cgroup: "cgroup-web", c.cgroup: "cgroup-web-cccccccccccc",
                          a.cgroup: "cgroup-web-aaaaaaaaaaaa"}


def test_names_do_not_change_when_a_third_one_leaves_nor_when_the_holder_leaves():
    for order in itertools.permutations(range(3)):
        boxes = [box("web", x * 64, inode=i) for i, x in enumerate("abc")]
        naming = Naming("{runtime}-{name}")
        first = names_of(naming, [boxes[i] for i in order])
        for leaving in range(3):
            rest = [b for i, b in enumerate(boxes) if i != leaving]
            for again in (rest, rest[::-1]):
                n2 = Naming("{runtime}-{name}")
                names_of(n2, [boxes[i] for i in order])
                left = names_of(n2, again)
                assert left == dict((b.cgroup, first[b.cgroup]) for b in rest)
                # and a pass later, in the other order, still the same
                assert names_of(n2, again[::-1]) == left


def test_a_newcomer_never_takes_a_live_containers_name_and_a_freed_name_goes_to_a_newcomer():
    naming = Naming("{runtime}-{name}")
    old, mid = box("web", "b" * 64, inode=5), box("web", "a" * 64, inode=1)
    assert names_of(naming, [old]) == {old.cgroup: "cgroup-web"}
    # older by inode, but new: the live holder keeps the name
    assert names_of(naming, [mid, old]) == {mid.cgroup: "cgroup-web-aaaaaaaaaaaa", old.cgroup: "cgroup-web"}
    # the holder leaves: mid keeps its name (a live container never changes its instance) ...
    assert names_of(naming, [mid]) == {mid.cgroup: "cgroup-web-aaaaaaaaaaaa"}
    # ... and the bare name goes to the next newcomer
    new = box("web", "c" * 64, inode=9)
    assert names_of(naming, [new, mid]) == {new.cgroup: "cgroup-web", mid.cgroup: "cgroup-web-aaaaaaaaaaaa"}


def same_id(cid, parent, inode, name="web"):
    return Container("docker", cid, name, "%s/%s" % (parent, cid), inode, key=("docker", cid, parent))


def test_ids_that_collide_too_get_a_hash_of_their_cgroup_path_in_any_order():
    """The same 64-hex id under three parents (or ids sharing their first 12 hex digits): the short ids
    collide as well, so all but the oldest of those get the path's hash."""
    cid = "d" * 64
    boxes = [same_id(cid, "/docker", 1), same_id(cid, "/ci/docker", 2), same_id(cid, "/other/docker", 3)]
    results = [names_of(Naming("{runtime}-{name}"), list(o)) for o in itertools.permutations(boxes)]
    assert all(r == results[0] for r in results)
    names = results[0]
    assert names["/docker/" + cid] == "docker-web"
    assert names["/ci/docker/" + cid] == "docker-web-dddddddddddd"
    other = names["/other/docker/" + cid]
    assert other.startswith("docker-web-dddddddddddd-") and len(other) == len("docker-web-dddddddddddd-") + 8
    # ids sharing a prefix, named by their short id (no runtime state): the same, and linear
    shared = [box("0123456789ab", "0123456789ab" + "%052x" % i, inode=i) for i in range(3000)]
    got = one_pass(Naming("{runtime}-{name}"), shared[::-1])
    assert len(set(got)) == 3000 and got[-1] == "cgroup-0123456789ab"


def test_each_collision_is_logged_once_per_container():
    logs = []
    naming = Naming("{runtime}-{name}", warn_once=lambda key, msg, cause=None: logs.append((key, msg)))
    boxes = [box("web", x * 64, inode=i) for i, x in enumerate("abcd")]
    for _ in range(3):
        one_pass(naming, boxes[::-1])
    assert len(logs) == 3 and len(set(k for k, _ in logs)) == 3
    assert all("identifier cgroup-web already taken" in m for _, m in logs)


def test_a_name_made_to_look_like_another_ones_suffix_stays_apart_in_any_order():
    a, b = box("web", "a" * 64, inode=1), box("web", "b" * 64, inode=2)
    fake = box("web-bbbbbbbbbbbb", "e" * 64, inode=3)
    results = [names_of(Naming("{runtime}-{name}"), list(o)) for o in itertools.permutations([a, b, fake])]
    assert all(r == results[0] for r in results)
    assert len(set(results[0].values())) == 3
    assert results[0][fake.cgroup] == "cgroup-web-bbbbbbbbbbbb"     # a base name comes before a suffix


def test_restarting_collectd_gives_the_oldest_the_bare_name_again():
    """Names are not persisted: after a restart the rules decide again, and the oldest container (the one
    that most likely held the name) gets it back, whatever order the first pass finds them in."""
    a, b = box("web", "a" * 64, inode=7), box("web", "b" * 64, inode=3)
    before = Naming("{runtime}-{name}")
    names_of(before, [b])
    names_of(before, [a, b])
    for order in ([a, b], [b, a]):
        assert names_of(Naming("{runtime}-{name}"), order) == names_of(before, order)


def test_name_outside_begin_pass_and_instance_of_from_another_thread():
    naming = Naming("{runtime}-{name}")
    a, b = box("web", "a" * 64), box("web", "b" * 64)
    naming.begin_pass()
    assert naming.name(a) == "cgroup-web" and naming.name(b) == "cgroup-web-bbbbbbbbbbbb"
    naming.end_pass([a, b])
    stop, errors = threading.Event(), []

    def watcher():
        while not stop.is_set():
            try:
                assert naming.instance_of(a) == "cgroup-web"
                naming.instance_of(box("web", "%064x" % 7))
            except Exception as e:      # pragma: no cover (what the test is for)
                errors.append(e)
                return
    t = threading.Thread(target=watcher)
    t.start()
    try:
        for i in range(200):
            churn = [box("web", "%064x" % (1000 + i * 10 + j)) for j in range(5)]
            one_pass(naming, [a, b] + churn)
    finally:
        stop.set()
        t.join()
    assert not errors
    assert naming.instance_of(a) == "cgroup-web"


def test_plugin_instance_is_the_base_of_every_suffix():
    c = box("web", "f" * 64)
    naming = Naming("{runtime}-{name}")
    assert naming.instance_of(c) == plugin_instance(c, "{runtime}-{name}") == "cgroup-web"
