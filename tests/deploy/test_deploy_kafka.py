"""The chart's Kafka client credentials (secrets.kafka, keda.authenticationRef).

Off by default; when set, every Deployment's containers (the check-config
init container too) and both hook Jobs get NUDGEL_KAFKA_PROPERTIES_FILE
naming the Secret's one key, mounted read-only; keda.authenticationRef names
a TriggerAuthentication on every ScaledObject's kafka trigger. The renders
and fixtures are test_deploy.py's.
"""
import pytest

from test_deploy import (CONSUMERS, ROLES, by_kind, default_docs, prod_docs,  # noqa: F401
                         prod_values, render, role_of)

KAFKA_ENV = "NUDGEL_KAFKA_PROPERTIES_FILE"
KAFKA_DEFAULTS = {"key": "client.properties", "mountPath": "/var/run/secrets/nudgel/kafka"}


def pods_with_containers(docs):
    """(object, pod spec, containers and init containers) of every Deployment and Job."""
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            pod = d["spec"]["template"]["spec"]
            yield d, pod, pod["containers"] + pod.get("initContainers", [])


def test_kafka_credentials_off_by_default(default_docs):
    docs = default_docs + render("--set", "checkConfig.enabled=true")
    seen = 0
    for obj, pod, containers in pods_with_containers(docs):
        seen += 1
        name = obj["metadata"]["name"]
        assert not any("kafka" in v["name"] for v in pod["volumes"]), (name, pod["volumes"])
        for c in containers:
            assert KAFKA_ENV not in {e["name"] for e in c["env"]}, (name, c["name"])
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert KAFKA_DEFAULTS["mountPath"] not in mounts, (name, c["name"])
    assert seen == 14  # 5 Deployments and 2 hook Jobs, twice
    sos = by_kind(docs, "ScaledObject")
    assert len(sos) == len(CONSUMERS)  # same names in both renders
    for so in [d for d in docs if d["kind"] == "ScaledObject"]:
        for trig in so["spec"]["triggers"]:
            assert "authenticationRef" not in trig, so["metadata"]["name"]


@pytest.mark.parametrize("which", ["set", "custom", "production"])
def test_kafka_credentials_from_secret(which, prod_docs, prod_values):
    if which == "production":
        docs, want = prod_docs, prod_values["secrets"]["kafka"]
        assert want["existingSecret"] == "nudgel-kafka"
    elif which == "set":
        docs = render("--set", "secrets.kafka.existingSecret=x")
        want = dict(KAFKA_DEFAULTS, existingSecret="x")
    else:
        want = {"existingSecret": "kafka-sasl", "key": "sasl.properties",
                "mountPath": "/etc/nudgel/kafka-auth"}
        docs = render(*[a for k, v in want.items() for a in ("--set", f"secrets.kafka.{k}={v}")],
                      "--set", "checkConfig.enabled=true")
    path = f"{want['mountPath']}/{want['key']}"
    kinds = {}
    for obj, pod, containers in pods_with_containers(docs):
        name = obj["metadata"]["name"]
        kinds.setdefault(obj["kind"], set()).add(role_of(obj))
        vols = [v for v in pod["volumes"]
                if v.get("secret", {}).get("secretName") == want["existingSecret"]]
        assert len(vols) == 1, (name, pod["volumes"])
        (vol,) = vols
        # Only the one key, under its own name; never the whole Secret.
        assert vol["secret"]["items"] == [{"key": want["key"], "path": want["key"]}], name
        assert vol["secret"]["defaultMode"] == 0o400, name
        for c in containers:
            env = {e["name"]: e for e in c["env"]}
            assert env[KAFKA_ENV] == {"name": KAFKA_ENV, "value": path}, (name, c["name"])
            mounts = [m for m in c["volumeMounts"] if m["name"] == vol["name"]]
            assert mounts == [{"name": vol["name"], "mountPath": want["mountPath"],
                               "readOnly": True}], (name, c["name"], c["volumeMounts"])
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
        if obj["kind"] == "Deployment" and which != "set":
            assert pod.get("initContainers"), f"{name}: the check-config init container"
    assert kinds == {"Deployment": set(ROLES), "Job": {"admin-migrate", "admin-topics"}}


@pytest.mark.parametrize("which", ["set", "production"])
def test_keda_trigger_authentication_ref(which, prod_docs, prod_values):
    if which == "production":
        docs, want = prod_docs, prod_values["keda"]["authenticationRef"]
        assert want == "nudgel-kafka-keda"
    else:
        want = "kafka-trigger-auth"
        docs = render("--set", f"keda.authenticationRef={want}")
    sos = by_kind(docs, "ScaledObject")
    assert sorted(role_of(s) for s in sos.values()) == sorted(CONSUMERS)
    for so in sos.values():
        (trig,) = so["spec"]["triggers"]
        assert trig["type"] == "kafka"
        assert trig["authenticationRef"] == {"name": want}, so["metadata"]["name"]
