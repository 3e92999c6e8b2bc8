"""The Helm chart, rendered by real helm 3 and helm 4: lint, Kubernetes' own schemas, and
what the objects say (security, probes, network policies, RBAC, the hub's config)."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from kioskhub.hub.cli import main as kioskhub
from kioskhub.hub.schema.config_file import load_site
from tests.support.helm import CHART, EVERYTHING_ON, helm

HELMS = ("helm3", "helm4")
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0", "1.37.0")
"""The oldest version the chart supports (Chart.yaml's kubeVersion), and newer ones."""


@pytest.fixture(scope="module", params=HELMS)
def rendered(request) -> list[dict]:
    return helm(request.param).template(EVERYTHING_ON)


@pytest.fixture(scope="module")
def defaults() -> list[dict]:
    return helm("helm4").template()


def objects(docs: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


@pytest.mark.parametrize("name", HELMS)
def test_lint_passes_strictly_with_defaults_and_everything_on(name):
    for values in ([], ["--values", str(EVERYTHING_ON)]):
        result = helm(name).run("lint", "--strict", str(CHART), *values)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_helm_3_and_4_render_the_same_objects():
    def without_tokens(docs):
        return [d for d in docs if d["kind"] != "Secret"]

    assert without_tokens(helm("helm3").template(EVERYTHING_ON)) == without_tokens(
        helm("helm4").template(EVERYTHING_ON)
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_passes_kubernetes_strict_schema(rendered, defaults, version):
    for doc in rendered + defaults:
        if not _custom(doc):
            kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("name", HELMS)
def test_a_cluster_older_than_the_supported_versions_is_refused(name):
    oldest = KUBERNETES_VERSIONS[0]
    assert f">={oldest}" in (CHART / "Chart.yaml").read_text()
    result = helm(name).run("template", "kh", str(CHART), "--kube-version", "1.28.0")
    assert result.returncode != 0
    assert "kubeVersion" in result.stderr and "1.28.0" in result.stderr, result.stderr


def test_every_custom_object_has_its_definition_in_the_chart(rendered):
    defined = {
        (crd["spec"]["group"], crd["spec"]["names"]["kind"], version["name"])
        for crd in objects(rendered, "CustomResourceDefinition").values()
        for version in crd["spec"]["versions"]
        if version["served"]
    }
    custom = {(*doc["apiVersion"].split("/"), doc["kind"]) for doc in rendered if _custom(doc)}
    assert custom == {
        ("traefik.io", "v1alpha1", "Middleware"),
        ("traefik.io", "v1alpha1", "IngressRoute"),
    }
    assert {(group, kind, version) for group, version, kind in custom} <= defined
    assert ("gateway.dask.org", "DaskCluster", "v1alpha1") in defined


def _custom(doc: dict) -> bool:
    """An object of a kind that the chart's CRDs define (Kubernetes' schemas do not know it)."""
    return doc["apiVersion"].startswith(("traefik.io/", "gateway.dask.org/"))


def test_every_pod_runs_unprivileged_with_probes(rendered):
    deployments = objects(rendered, "Deployment")
    assert set(deployments) == {
        "kh-hub",
        "kh-proxy",
        "kh-dask-gateway",
        "kh-dask-controller",
        "kh-dask-traefik",
    }
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            assert "livenessProbe" in container, name
            assert container["resources"]["limits"]["memory"], name
    hub = deployments["kh-hub"]["spec"]["template"]["spec"]["containers"][0]
    assert hub["readinessProbe"]["httpGet"] == {"path": "/hub/health", "port": "hub"}
    proxy = deployments["kh-proxy"]["spec"]["template"]["spec"]
    assert proxy["automountServiceAccountToken"] is False
    assert proxy["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/_chp_healthz"


def test_the_hub_gets_a_kioskhub_yaml_that_the_site_schema_accepts(rendered, tmp_path):
    config = objects(rendered, "ConfigMap")["kh-config"]["data"]["kioskhub.yaml"]
    hub = objects(rendered, "Deployment")["kh-hub"]["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in hub["containers"][0]["volumeMounts"]}
    assert mounts["/srv/kioskhub/kioskhub.yaml"]["subPath"] == "kioskhub.yaml"
    # The hub's pod has an (empty) folder at each data mount's source, as here.
    assert mounts["/srv/kioskhub/data/beams"]["readOnly"] is True
    (tmp_path / "data" / "beams").mkdir(parents=True)
    (tmp_path / "kioskhub.yaml").write_text(config, encoding="utf-8")
    site = load_site(tmp_path / "kioskhub.yaml")
    assert site.spawner.backend == "kubernetes"
    assert site.hub.state_dir == Path("/srv/kioskhub/state")
    assert site.pods.namespace == "lab"
    assert site.pods.hub_connect_url == "http://kh-hub:8081"
    assert site.pods.image == "registry.example.org/kioskhub/lab:2026.11"
    assert [p.name for p in site.profiles] == ["small", "gpu"]
    assert site.dask.enabled and site.gallery.enabled


def test_servers_use_kioskhubs_image_unless_the_site_names_one(defaults, tmp_path):
    config = yaml.safe_load(objects(defaults, "ConfigMap")["kh-config"]["data"]["kioskhub.yaml"])
    assert config["pods"]["image"] == "localhost/kioskhub-hub:latest"
    assert config["spawner"]["backend"] == "kubernetes"


def test_user_servers_reach_only_the_hub_the_proxy_dns_the_gateway_and_what_the_site_allows(
    rendered,
):
    policies = objects(rendered, "NetworkPolicy")
    users = policies["kh-users"]["spec"]
    assert users["podSelector"] == {"matchLabels": {"component": "singleuser-server"}}
    assert users["policyTypes"] == ["Ingress", "Egress"]
    allowed = []
    for rule in users["egress"]:
        peer = rule["to"][0]
        target = (
            peer.get("ipBlock", {}).get("cidr")
            or peer["podSelector"]["matchLabels"].get("app.kubernetes.io/component")
            or peer["podSelector"]["matchLabels"].get("k8s-app")
        )
        allowed.append((target, sorted(p["port"] for p in rule.get("ports", []))))
    assert allowed == [
        ("hub", [8081]),
        ("proxy", [8000]),
        ("kube-dns", [53, 53]),
        ("dask-traefik", []),
        ("0.0.0.0/0", [443]),
    ]
    assert users["egress"][-1]["to"][0]["ipBlock"]["except"] == ["10.0.0.0/8", "169.254.169.254/32"]
    sources = [p["podSelector"]["matchLabels"] for p in users["ingress"][0]["from"]]
    assert [s["app.kubernetes.io/component"] for s in sources] == ["proxy", "hub"]
    hub = policies["kh-hub"]["spec"]["ingress"]
    assert "ports" not in hub[0]  # the proxy reaches the hub and its hub-managed services
    assert hub[0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "proxy"
    )
    assert hub[1]["ports"] == [{"protocol": "TCP", "port": 8081}]  # servers, the gateway
    proxy_api = policies["kh-proxy"]["spec"]["ingress"][1]
    assert proxy_api["ports"] == [{"protocol": "TCP", "port": 8001}]
    assert proxy_api["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "hub"
    )


def test_each_account_holds_only_what_it_needs(rendered):
    roles = objects(rendered, "Role")
    assert roles["kh-hub"]["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["pods", "persistentvolumeclaims"],
            "verbs": ["get", "list", "watch", "create", "delete"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
    ]
    assert not objects(rendered, "ClusterRole") and not objects(rendered, "ClusterRoleBinding")
    for role in roles.values():
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
    traefik = roles["kh-dask-traefik"]["rules"]
    assert {verb for rule in traefik for verb in rule["verbs"]} == {"get", "list", "watch"}
    proxy_account = objects(rendered, "ServiceAccount")["kh-proxy"]
    assert proxy_account["automountServiceAccountToken"] is False


def test_claims_budgets_ingress_and_secrets(rendered):
    claim = objects(rendered, "PersistentVolumeClaim")["kh-hub-state"]
    assert claim["spec"]["storageClassName"] == "cinder-csi"
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    budgets = objects(rendered, "PodDisruptionBudget")
    assert {n: b["spec"]["minAvailable"] for n, b in budgets.items()} == {
        "kh-hub": 1,
        "kh-proxy": 1,
    }
    ingress = objects(rendered, "Ingress")["kh"]["spec"]
    assert ingress["rules"][0]["host"] == "kioskhub.example.org"
    assert ingress["tls"] == [{"hosts": ["kioskhub.example.org"], "secretName": "kioskhub-tls"}]
    secret = objects(rendered, "Secret")["kh-secrets"]
    assert set(secret["data"]) == {"proxy-token", "gateway-token"}
    hub_env = objects(rendered, "Deployment")["kh-hub"]["spec"]["template"]["spec"]["containers"][
        0
    ]["env"]
    token = next(e for e in hub_env if e["name"] == "CONFIGPROXY_AUTH_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "kh-secrets", "key": "proxy-token"}


def test_the_hub_takes_the_sites_secret_variables_from_the_named_secret(rendered):
    hub = objects(rendered, "Deployment")["kh-hub"]["spec"]["template"]["spec"]["containers"][0]
    assert hub["envFrom"] == [{"secretRef": {"name": "kioskhub-auth"}}]


def test_the_values_example_in_the_docs_installs(tmp_path):
    document = (CHART.parents[1] / "docs" / "kubernetes.md").read_text(encoding="utf-8")
    example = document.split("## 2. Values", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    values = tmp_path / "values.yaml"
    values.write_text(example, encoding="utf-8")
    for name in HELMS:
        result = helm(name).run("lint", "--strict", str(CHART), "--values", str(values))
        assert result.returncode == 0, result.stdout + result.stderr


def test_defaults_leave_the_gateway_ingress_and_budgets_out(defaults):
    kinds = {doc["kind"] for doc in defaults}
    assert "Ingress" not in kinds and "PodDisruptionBudget" not in kinds
    assert not [
        d
        for d in defaults
        if "dask" in d["metadata"]["name"] and d["kind"] != "CustomResourceDefinition"
    ]


BAD_VALUES = [
    # (values, key path, what each tool must say was expected)
    ({"hub": {"log_level": "LOUD"}}, ("hub", "log_level"), ["DEBUG", "INFO", "WARNING"]),
    ({"hub": {"colour": "red"}}, ("hub",), ["colour"]),
    ({"spawner": {"start_timeout": 1}}, ("spawner", "start_timeout"), ["5"]),
    ({"auth": {"type": "magic"}}, ("auth", "type"), ["shared-password", "oidc"]),
    ({"profiles": [{"name": "huge", "cpu": 1000}]}, ("profiles", 0, "cpu"), ["512"]),
]


@pytest.mark.parametrize(("site", "key", "expected"), BAD_VALUES)
def test_a_mistake_gets_the_same_key_and_expectation_from_helm_and_check_config(
    site, key, expected, tmp_path, capsys
):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"site": site}), encoding="utf-8")
    assert kioskhub(["check-config", "--config", str(_site_file(tmp_path, site))]) != 0
    said = "".join(capsys.readouterr())
    check_config_path = "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in key
    ).lstrip(".")
    assert f"  {check_config_path}" in said and all(word in said for word in expected), said
    for name in HELMS:
        for command in ("lint", "template"):
            result = helm(name).run(
                command,
                *(["kh"] if command == "template" else []),
                str(CHART),
                "--values",
                str(values),
            )
            said = result.stdout + result.stderr
            assert result.returncode != 0, f"{name} {command} accepted {site}"
            parts = ["site", *map(str, key)]
            path = ".".join(parts) if name == "helm3" else "/" + "/".join(parts)
            assert path in said and all(word in said for word in expected), f"{name}: {said}"


def _site_file(folder: Path, site: dict) -> Path:
    path = folder / "kioskhub.yaml"
    path.write_text(yaml.safe_dump(site), encoding="utf-8")
    return path


def test_site_text_reaches_the_hub_as_written_never_as_template_or_yaml(tmp_path):
    hostile = (
        'Small\n  spawner: {backend: local}\n{{ .Release.Name }} "quoted": yes # not a comment'
    )
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {"site": {"profiles": [{"name": "small", "description": hostile, "default": True}]}}
        ),
        encoding="utf-8",
    )
    for name in HELMS:
        docs = helm(name).template(values)
        config = yaml.safe_load(objects(docs, "ConfigMap")["kh-config"]["data"]["kioskhub.yaml"])
        assert config["profiles"][0]["description"] == hostile
        assert config["spawner"] == {"backend": "kubernetes"}


def test_a_host_name_that_would_break_the_ingress_is_refused(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump({"ingress": {"enabled": True, "host": "evil.org\n  - host: other"}})
    )
    for name in HELMS:
        result = helm(name).run("template", "kh", str(CHART), "--values", str(values))
        assert result.returncode != 0
        assert "ingress" in result.stderr and "host" in result.stderr, result.stderr
