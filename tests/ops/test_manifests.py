"""k8s/: every kustomization renders, every object validates against the Kubernetes schemas
(kubernetes-validate, strict), and the production invariants hold: probes, requests and limits,
the restricted security context, a PodDisruptionBudget and an autoscaler per Deployment,
headless gRPC Services, NetworkPolicies that allow exactly the call graph, Secrets referenced
and never defined, and settings every service accepts."""

from __future__ import annotations

import copy
import importlib
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from common.config import Env
from tests.ops.kustomize import KustomizeError, Obj, merge_patch, render, split_image

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUSTOMIZATIONS = {"base": K8S / "base", "dev": K8S / "overlays/dev", "prod": K8S / "overlays/prod"}
KUBERNETES_VERSION = "1.37"
USER_ID = 10001
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - pods listen on their own network namespace

# Which code each component runs, and its ports.
MODULES = {
    "auth": ("auth_service", 50051),
    "score": ("score_service", 50052),
    "leaderboard": ("leaderboard_service", 50053),
    "stream": ("stream_service", 50054),
    "edge": ("edge", 8000),
}
GRPC = {name: port for name, (_, port) in MODULES.items() if name != "edge"}
# Secrets the manifests may reference (created by the operator, see README.md).
SECRETS = {
    "scoreboard-database": {"url"},
    "scoreboard-redis": {"url", "password"},
    "scoreboard-signing-key": {"signing.pem"},
    "scoreboard-ticket": {"secret"},
    "scoreboard-edge-client": {"secret"},
    "scoreboard-admin-client": {"secret"},
    "scoreboard-game-server-client": {"secret"},
    "scoreboard-postgres": {"password"},
    "scoreboard-tls": set(),
}


def _call_graph(overlay: str) -> set[tuple[str, str, int]]:
    """Every allowed connection: (from, to, port). Nothing more may be open."""
    edges = {("ingress-controller", "edge", 8000), ("prometheus", "edge", 8000)}
    for name, port in GRPC.items():
        edges |= {("edge", name, port), ("game-servers", name, port), ("prometheus", name, 9090)}
    if overlay != "base":
        for name in ("auth", "score", "leaderboard", "migrate"):
            edges.add((name, "postgres", 5432))
        for name in ("edge", "auth", "score", "leaderboard", "stream"):
            edges.add((name, "redis", 6379))
    pods = set(MODULES) | {"migrate"} | ({"postgres", "redis"} if overlay == "dev" else set())
    edges |= {(pod, "dns", 53) for pod in pods}
    return edges


@pytest.fixture(scope="module", params=list(KUSTOMIZATIONS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[Obj]]:
    name: str = request.param
    return name, render(KUSTOMIZATIONS[name])


def _of(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def _named(objects: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in _of(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def _component(workload: Obj) -> str:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels["app.kubernetes.io/component"]


def _workloads(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job")]


def test_every_object_validates_against_the_kubernetes_schemas(
    rendered: tuple[str, list[Obj]],
) -> None:
    name, objects = rendered
    assert objects
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']}: {where}: {exc.message}")
    namespaces = {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}
    assert namespaces == {_of(objects, "Namespace")[0]["metadata"]["name"]}


def test_the_validation_is_strict() -> None:
    """A misspelt field and a wrong type are caught, so a pass above means something."""
    deployment = _named(render(KUSTOMIZATIONS["prod"]), "Deployment", "scoreboard-score")
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpcc"] = {"port": 1}
    wrong = copy.deepcopy(deployment)
    wrong["spec"]["revisionHistoryLimit"] = "five"
    for broken in (typo, wrong):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_workload_is_probed_limited_and_locked_down(rendered: tuple[str, list[Obj]]) -> None:
    name, objects = rendered
    accounts = {o["metadata"]["name"] for o in _of(objects, "ServiceAccount")}
    for workload in _workloads(objects):
        where = f"{name}: {workload['kind']}/{workload['metadata']['name']}"
        pod = _pod_spec(workload)
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["serviceAccountName"] in accounts, where
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, where
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert context["runAsUser"] > 0, where
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            at = f"{where} container {container['name']}"
            resources = container["resources"]
            for bound in ("requests", "limits"):
                assert set(resources[bound]) >= {"cpu", "memory"}, at
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, at
            assert security["readOnlyRootFilesystem"] is True, at
            assert security["runAsNonRoot"] is True, at
            assert security["capabilities"] == {"drop": ["ALL"]}, at
            assert security.get("privileged", False) is False, at
            if workload["kind"] != "Job":
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    assert probe in container, f"{at}: no {probe}"


def test_every_deployment_has_grpc_or_http_probes_a_pdb_and_an_autoscaler(
    rendered: tuple[str, list[Obj]],
) -> None:
    name, objects = rendered
    deployments = _of(objects, "Deployment")
    assert {_component(d) for d in deployments} == set(MODULES)
    for deployment in deployments:
        component = _component(deployment)
        where = f"{name}: Deployment/{deployment['metadata']['name']}"
        module, port = MODULES[component]
        (container,) = _pod_spec(deployment)["containers"]
        assert container["args"] == [module], where
        assert split_image(container["image"])[0].endswith("scoreboard"), where
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if component == "edge":
                assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
            else:
                assert container[probe]["grpc"]["port"] == port, f"{where} {probe}"
        if component != "edge":
            # Ready means the service itself serves, not only the process.
            service = container["readinessProbe"]["grpc"]["service"]
            assert service.startswith(f"scoreboard.{component}.v1.") and service.endswith(
                "Service"
            ), where
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        budgets = [
            p
            for p in _of(objects, "PodDisruptionBudget")
            if p["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(budgets) == 1, f"{where}: {len(budgets)} PodDisruptionBudgets"
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        scalers = [
            h
            for h in _of(objects, "HorizontalPodAutoscaler")
            if h["spec"]["scaleTargetRef"]
            == {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": deployment["metadata"]["name"],
            }
        ]
        assert len(scalers) == 1, f"{where}: {len(scalers)} autoscalers"
        assert 1 <= scalers[0]["spec"]["minReplicas"] <= scalers[0]["spec"]["maxReplicas"]
        # The autoscaler owns the count; a fixed one would fight it on every apply.
        assert "replicas" not in deployment["spec"], where
        minimum = scalers[0]["spec"]["minReplicas"]
        assert minimum == {"base": 2, "dev": 1, "prod": 3}[name], where
        if name == "prod" and component in ("edge", "score"):
            assert scalers[0]["spec"]["maxReplicas"] >= 20, where


def test_every_service_keeps_the_shared_shape(rendered: tuple[str, list[Obj]]) -> None:
    """k8s/components/service gives every service the same rollout, security contexts, probe
    timings and volumes: each service's rendered Deployment has all of it, exactly."""
    name, objects = rendered
    for deployment in _of(objects, "Deployment"):
        where = f"{name}: Deployment/{deployment['metadata']['name']}"
        spec = deployment["spec"]
        assert spec["revisionHistoryLimit"] == 5, where
        assert spec["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        }, where
        annotations = spec["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", where
        assert annotations["prometheus.io/path"] == "/metrics", where
        pod = _pod_spec(deployment)
        assert pod["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": USER_ID,
            "runAsGroup": USER_ID,
            "fsGroup": USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        }, where
        assert pod["volumes"][:2] == [
            {"name": "jwks", "configMap": {"name": "scoreboard-jwks"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ], where
        (container,) = pod["containers"]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        }, where
        assert container["envFrom"] == [{"configMapRef": {"name": "scoreboard-config"}}], where
        assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}, where
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts.items() >= {"jwks": "/etc/scoreboard/jwks", "tmp": "/tmp"}.items(), where
        timings = {
            "startupProbe": {"periodSeconds": 2, "failureThreshold": 30},
            "readinessProbe": {"periodSeconds": 5, "failureThreshold": 2},
            "livenessProbe": {"periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3},
        }
        for probe, timing in timings.items():
            handler = {k: v for k, v in container[probe].items() if k not in timing}
            assert container[probe] == {**handler, **timing}, f"{where} {probe}"
            assert len(handler) == 1, f"{where} {probe}: one handler, {sorted(handler)}"
    budgets = _of(objects, "PodDisruptionBudget")
    assert budgets and all(b["spec"]["maxUnavailable"] == 1 for b in budgets)


def test_grpc_services_are_headless_and_the_clients_dial_them_with_dns(
    rendered: tuple[str, list[Obj]],
) -> None:
    name, objects = rendered
    config = _named(objects, "ConfigMap", "scoreboard-config")["data"]
    services = {s["metadata"]["name"]: s for s in _of(objects, "Service")}
    for component, port in GRPC.items():
        service = services[f"scoreboard-{component}"]
        assert service["spec"]["clusterIP"] == "None", f"{name}: {component} is not headless"
        assert [(p["port"], p["appProtocol"]) for p in service["spec"]["ports"]] == [(port, "grpc")]
        address = config[f"SCOREBOARD_{component.upper()}_ADDR"]
        assert address == f"dns:///scoreboard-{component}:{port}", address
    for service in services.values():
        grpc_ports = [p for p in service["spec"]["ports"] if p.get("appProtocol") == "grpc"]
        if grpc_ports:
            assert service["spec"].get("clusterIP") == "None", service["metadata"]["name"]


def _peers(rule_peers: list[Obj], namespace_names: dict[str, str]) -> set[str]:
    found = set()
    for peer in rule_peers:
        if "ipBlock" in peer:
            found.add("external")
        elif "namespaceSelector" in peer:
            labels = peer["namespaceSelector"]["matchLabels"]
            if labels == {"scoreboard.io/game-servers": "true"}:
                found.add("game-servers")
            else:
                namespace = labels["kubernetes.io/metadata.name"]
                if namespace == "kube-system":
                    assert peer["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
                found.add(namespace_names[namespace])
        else:
            found.add(peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"])
    return found


def _allowed(objects: list[Obj]) -> set[tuple[str, str, int]]:
    """The connections the NetworkPolicies allow. Between two pods of the namespace, both the
    caller's egress and the callee's ingress must allow it (everything else is denied)."""
    outside = {
        "ingress-nginx": "ingress-controller",
        "monitoring": "prometheus",
        "kube-system": "dns",
    }
    pods = {_component(w) for w in _workloads(objects)}
    egress: set[tuple[str, str, int]] = set()
    ingress: set[tuple[str, str, int]] = set()
    for policy in _of(objects, "NetworkPolicy"):
        spec = policy["spec"]
        if spec["podSelector"] == {}:
            selected = pods
        else:
            selected = {spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"]}
        for rule in spec.get("egress", []):
            for peer in _peers(rule["to"], outside):
                for port in rule["ports"]:
                    number = port["port"]
                    target = (
                        {5432: "postgres", 6379: "redis"}[number] if peer == "external" else peer
                    )
                    egress |= {(pod, target, number) for pod in selected}
        for rule in spec.get("ingress", []):
            for peer in _peers(rule["from"], outside):
                for port in rule["ports"]:
                    ingress |= {(peer, pod, port["port"]) for pod in selected}
    allowed = set()
    for source, target, port in egress | ingress:
        inside = source in pods and target in pods
        if not inside or ((source, target, port) in egress and (source, target, port) in ingress):
            allowed.add((source, target, port))
    # One-sided rules between pods are dead rules: flag them too.
    one_sided = {e for e in egress ^ ingress if e[0] in pods and e[1] in pods}
    assert not one_sided, f"rules without their other side: {sorted(one_sided)}"
    return allowed


def test_network_policies_allow_exactly_the_call_graph(rendered: tuple[str, list[Obj]]) -> None:
    name, objects = rendered
    deny = _named(objects, "NetworkPolicy", "default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    allowed = _allowed(objects)
    expected = _call_graph(name)
    assert allowed - expected == set(), f"{name}: open beyond the call graph"
    assert expected - allowed == set(), f"{name}: call graph edges not allowed"


def _references(objects: list[Obj]) -> list[tuple[str, str, str]]:
    """(component, secret, key) for every Secret a pod reads."""
    found = []
    for workload in _workloads(objects):
        pod = _pod_spec(workload)
        component = _component(workload)
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    found.append((component, ref["name"], ref["key"]))
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                for item in volume["secret"]["items"]:
                    found.append((component, volume["secret"]["secretName"], item["key"]))
    return found


def test_secrets_are_referenced_never_defined(rendered: tuple[str, list[Obj]]) -> None:
    _, objects = rendered
    assert _of(objects, "Secret") == [], "credentials never live in the repository"
    for component, secret, key in _references(objects):
        assert secret in SECRETS and key in SECRETS[secret], (component, secret, key)
    holders = {c for c, secret, _ in _references(objects) if secret == "scoreboard-signing-key"}
    assert holders == {"auth"}, "only auth_service may hold the private signing key"
    tls = [t["secretName"] for i in _of(objects, "Ingress") for t in i["spec"].get("tls", [])]
    assert set(tls) <= {"scoreboard-tls"}


def _environment(objects: list[Obj], container: Obj) -> dict[str, str]:
    """What the container's environment holds, with stand-ins for Secret values."""
    stand_ins = {
        "url": "postgresql://scoreboard@db/scoreboard",
        "secret": "s" * 48,
        "password": "p" * 24,
    }
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(_named(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            value = stand_ins[ref["key"]]
            if ref["name"] == "scoreboard-redis" and ref["key"] == "url":
                value = "redis://:pw@redis:6379/0"
            env[item["name"]] = value
    return env


def _mounted(pod: Obj, container: Obj, path: str) -> bool:
    return any(path.startswith(m["mountPath"].rstrip("/") + "/") for m in container["volumeMounts"])


def test_every_service_accepts_the_settings_the_manifests_give_it(
    rendered: tuple[str, list[Obj]],
) -> None:
    _, objects = rendered
    for deployment in _of(objects, "Deployment"):
        component = _component(deployment)
        module, port = MODULES[component]
        assert importlib.util.find_spec(f"{module}.__main__") is not None
        pod = _pod_spec(deployment)
        (container,) = pod["containers"]
        environ = _environment(objects, container)
        config = importlib.import_module(f"{module}.config")
        settings = config.Settings.from_env(Env(environ))
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        if component == "edge":
            assert (settings.host, settings.port) == (ALL_INTERFACES, port)
            assert ports == {"http": port}
            assert annotations["prometheus.io/port"] == str(port)
            assert settings.credentials.client_id == "edge"
            assert settings.trust_forwarded is True
        else:
            assert (settings.grpc.host, settings.grpc.port) == (ALL_INTERFACES, port)
            assert settings.grpc.metrics_port == ports["metrics"] == 9090
            assert annotations["prometheus.io/port"] == "9090"
            assert ports["grpc"] == port
            # The drain fits in the termination grace period with the preStop pause.
            grace = pod["terminationGracePeriodSeconds"]
            assert settings.grpc.grace_seconds + 5 < grace
        verifier = settings.verifier
        assert verifier.jwks_file is not None and _mounted(pod, container, str(verifier.jwks_file))
        if component == "auth":
            assert _mounted(pod, container, str(settings.signing_key_file))


def test_every_variable_the_manifests_set_is_read_by_the_code(
    rendered: tuple[str, list[Obj]],
) -> None:
    """A misspelt variable would be ignored silently and leave a default in production."""
    _, objects = rendered
    source = "\n".join(
        p.read_text()
        for folder in (
            "common",
            "ops",
            "auth_service",
            "score_service",
            "leaderboard_service",
            "stream_service",
            "edge",
        )
        for p in (ROOT / folder).rglob("*.py")
    )
    read = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', source))
    names = set(_named(objects, "ConfigMap", "scoreboard-config")["data"])
    for workload in _of(objects, "Deployment"):
        for container in _pod_spec(workload)["containers"]:
            names |= {e["name"] for e in container.get("env", [])}
    for variable in names:
        assert variable.startswith("SCOREBOARD_"), variable
        assert variable.removeprefix("SCOREBOARD_") in read, f"{variable} is read nowhere"


def test_the_migration_job_migrates_then_creates_the_service_accounts(
    rendered: tuple[str, list[Obj]],
) -> None:
    from common.auth.principal import ALL_SCOPES
    from ops.cli import build_parser

    _, objects = rendered
    job = _named(objects, "Job", "scoreboard-migrate")
    pod = _pod_spec(job)
    assert pod["restartPolicy"] == "OnFailure"
    (migrate,) = pod["initContainers"]
    assert migrate["command"] == ["scoreboard", "migrate"]
    assert build_parser().parse_args(migrate["command"][1:]).command == "migrate"
    (accounts,) = pod["containers"]
    script = accounts["command"][-1]
    assert "python -m auth_service create-service-account" in script
    assert ">/dev/null" in script, "the tool prints the secret; the Job's log must not"
    assert '--secret="$3"' in script, "one argument, even for a secret that starts with -"
    granted = re.findall(r'^account (\S+) "([^"]+)"', script, re.MULTILINE)
    assert {client for client, _ in granted} == {"edge", "admin", "game-server"}
    for _, scopes in granted:
        assert set(scopes.split()) <= ALL_SCOPES
    edge_config = _named(objects, "Deployment", "scoreboard-edge")
    edge_env = {e["name"]: e for e in _pod_spec(edge_config)["containers"][0]["env"]}
    assert edge_env["SCOREBOARD_CLIENT_ID"]["value"] == "edge"


def test_the_ingress_exposes_only_public_paths_with_websocket_timeouts(
    rendered: tuple[str, list[Obj]],
) -> None:
    _, objects = rendered
    (ingress,) = _of(objects, "Ingress")
    annotations = ingress["metadata"]["annotations"]
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        # Longer than any idle gap of a live socket (heartbeat every 30 s), by far.
        assert int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 3600
    paths = {}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            assert path["backend"]["service"] == {
                "name": "scoreboard-edge",
                "port": {"name": "http"},
            }
            paths[path["path"]] = path["pathType"]
    assert paths["/ws"] == "Exact" and paths["/api"] == "Prefix" and paths["/"] == "Exact"

    def routed(url: str) -> bool:
        return any(
            url == p or (kind == "Prefix" and url.startswith(p.rstrip("/") + "/"))
            for p, kind in paths.items()
        )

    for public in ("/", "/ws", "/api/leaderboard", "/.well-known/jwks.json", "/static/app.js"):
        assert routed(public), public
    for internal in ("/metrics", "/healthz"):
        assert not routed(internal), internal
    edge = _named(objects, "Service", "scoreboard-edge")
    assert [p["name"] for p in edge["spec"]["ports"]] == ["http"]


def test_the_image_runs_as_the_manifests_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = dockerfile.split("\nFROM ")
    final = stages[-1]
    assert re.search(rf"^USER {USER_ID}:{USER_ID}$", final, re.MULTILINE)
    assert re.search(rf"useradd .*--uid {USER_ID}", final)
    assert 'ENTRYPOINT ["python", "-m"]' in final
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert base is not None and re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", base.group(1))
    for objects in (render(path) for path in KUSTOMIZATIONS.values()):
        for workload in _workloads(objects):
            pod = _pod_spec(workload)
            if split_image(pod["containers"][0]["image"])[0].endswith("scoreboard"):
                assert pod["securityContext"]["runAsUser"] == USER_ID
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignored[0] == "*", "the build context starts empty; sources are listed one by one"
    copied = set(re.findall(r"^COPY (\S+) ", dockerfile, re.MULTILINE))
    assert {"pyproject.toml", "scoreboard", "common", "ops", "edge"} <= copied
    for module, _ in MODULES.values():
        assert module in copied and f"!{module}/" in ignored


def test_the_renderers_strategic_merge_follows_kustomize() -> None:
    """As `kubectl kustomize` (v5) merges: the target keeps its name, maps merge, null deletes,
    a keyed list takes the patch's items first (merged with the same key's), then its own."""
    deployment: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "a", "labels": {"x": "a"}},
        "spec": {
            "paused": True,
            "template": {
                "spec": {
                    "volumes": [
                        {"name": "s", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                    ]
                }
            },
        },
    }
    patch: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "any"},
        "spec": {
            "paused": None,
            "template": {
                "spec": {
                    "volumes": [
                        {"name": "jwks", "configMap": {"name": "j"}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "1Mi"}},
                        {"name": "k", "emptyDir": {}},
                    ]
                }
            },
        },
    }
    merge_patch(deployment, patch)
    assert deployment["metadata"] == {"name": "a", "labels": {"x": "a"}}
    assert "paused" not in deployment["spec"]
    assert deployment["spec"]["template"]["spec"]["volumes"] == [
        {"name": "jwks", "configMap": {"name": "j"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Mi"}},
        {"name": "k", "emptyDir": {}},
        {"name": "s", "emptyDir": {}},
    ]
    unknown = {"kind": "Deployment", "metadata": {}, "spec": {"template": {"spec": {"x": [1]}}}}
    with pytest.raises(KustomizeError, match="no merge rule"):
        merge_patch(deployment, unknown)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_the_renderer_matches_kubectl_kustomize() -> None:
    def key(obj: Obj) -> tuple[str, str, str]:
        return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])

    for folder in KUSTOMIZATIONS.values():
        output = subprocess.run(
            ["kubectl", "kustomize", str(folder)],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        theirs = sorted((d for d in yaml.safe_load_all(output) if d), key=key)
        ours: list[Any] = sorted(render(folder), key=key)
        assert [key(o) for o in ours] == [key(o) for o in theirs]
        assert ours == theirs, folder
