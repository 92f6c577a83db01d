"""Deployment files checked offline: each against its schema, and against each other.

Kubernetes manifests against the API's own JSON schemas (``kubernetes-validate``, strict:
an unknown or misspelt field fails), the compose file against the Compose Specification
schema (vendored in ``schemas/``), the systemd unit with ``systemd-analyze``, the
Containerfile parsed with ``dockerfile-parse``. Then the cross-references no schema sees:
names, labels, ports, probes, flags and environment variables the code really has.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import jsonschema
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from deploy.cost import Assumptions
from edge_relay.cli import relay
from edge_relay.h3 import UDP_BUFFER_BYTES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SCHEMAS = Path(__file__).with_name("schemas")
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
"""The oldest minor version the manifests support, and the newest the schemas know."""
COMPOSE_SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"


def resources() -> list[dict[str, Any]]:
    """Every Kubernetes object in deploy/k8s (not the kustomization, not Helm values)."""
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources() if r["kind"] == kind}


def pod_spec(deployment: str) -> dict[str, Any]:
    return by_kind("Deployment")[deployment]["spec"]["template"]["spec"]


def containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, deployment in by_kind("Deployment").items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            yield name, container


def validate_kubernetes(resource: dict[str, Any]) -> None:
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(map(str, exc.path))
            name = f"{resource['kind']}/{resource['metadata']['name']}"
            pytest.fail(f"{name} is invalid for Kubernetes {version}: {path}: {exc.message}")


# --- Kubernetes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "resource", resources(), ids=lambda r: f"{r['kind']}/{r['metadata']['name']}"
)
def test_every_kubernetes_manifest_matches_the_api_schema(resource: dict[str, Any]) -> None:
    validate_kubernetes(resource)
    labels = resource["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "gruppetto"
    assert "namespace" not in resource["metadata"], "kustomization.yaml sets the namespace"


def test_the_kustomization_lists_every_manifest_and_builds(tmp_path: Path) -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert kustomization["namespace"] == by_kind("Namespace").popitem()[0]
    image_names = {image["name"] for image in kustomization["images"]}
    assert {container["image"] for _, container in containers()} == image_names
    (generator,) = kustomization["secretGenerator"]
    assert generator["name"] == "gruppetto-relay-credential"
    assert generator["files"] == ["credential=relay.key"]
    assert "relay.key" in (K8S / ".gitignore").read_text().split()

    # What `kubectl apply -k` applies: kustomize's real output, validated object by object.
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip(
            "kubectl (with its built-in kustomize) is not installed: apt-get install kubectl"
        )
    build = tmp_path / "k8s"
    shutil.copytree(K8S, build)
    (build / "relay.key").write_text("grr_1_" + "s" * 43 + "\n")
    out = subprocess.run(
        [kubectl, "kustomize", str(build)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    built = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    assert len(built) == len(resources()) + 1  # and the generated Secret
    for resource in built:
        validate_kubernetes(resource)
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == "gruppetto"
    (secret,) = [r for r in built if r["kind"] == "Secret"]
    assert secret["metadata"]["name"].startswith("gruppetto-relay-credential-")
    relay_pod = next(
        r for r in built if (r["kind"], r["metadata"]["name"]) == ("Deployment", "gruppetto-relay")
    )
    volumes = relay_pod["spec"]["template"]["spec"]["volumes"]
    assert {"secretName": secret["metadata"]["name"], "defaultMode": 0o440} in [
        v.get("secret") for v in volumes
    ], "kustomize must point the relays at the generated (hash-named) Secret"


def test_pods_meet_the_restricted_pod_security_standard() -> None:
    (namespace,) = by_kind("Namespace").values()
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name in by_kind("Deployment"):
        spec = pod_spec(name)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert context["readOnlyRootFilesystem"] is True, name
            assert "memory" in container["resources"]["limits"], name


@pytest.mark.parametrize("deployment", ["gruppetto-cloud", "gruppetto-relay"])
def test_probes_are_wired_to_the_health_endpoints(deployment: str) -> None:
    (container,) = pod_spec(deployment)["containers"]
    ports = {port["name"]: port for port in container["ports"]}
    for probe, path in [
        ("startupProbe", "/healthz/live"),
        ("livenessProbe", "/healthz/live"),
        ("readinessProbe", "/healthz/ready"),
    ]:
        check = container[probe]["httpGet"]
        assert check["path"] == path, probe
        assert ports[check["port"]]["protocol"] == "TCP", probe


def test_the_cloud_is_one_writer_on_its_volume() -> None:
    cloud = by_kind("Deployment")["gruppetto-cloud"]
    assert cloud["spec"]["replicas"] == 1
    assert cloud["spec"]["strategy"]["type"] == "Recreate"
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod_spec("gruppetto-cloud")["volumes"]
        if "persistentVolumeClaim" in v
    ]
    (claim,) = claims
    pvc = by_kind("PersistentVolumeClaim")[claim]
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    # the cost model's base volume is the one the manifests ask for
    assert pvc["spec"]["resources"]["requests"]["storage"] == f"{Assumptions().base_volume_gb}Gi"
    (container,) = pod_spec("gruppetto-cloud")["containers"]
    assert container["args"][:3] == ["cloud", "--data", "/data"]
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]


def test_services_select_pods_and_ports_that_exist() -> None:
    pods = {
        name: (d["spec"]["template"]["metadata"]["labels"], pod_spec(name)["containers"])
        for name, d in by_kind("Deployment").items()
    }
    for name, service in by_kind("Service").items():
        selector = service["spec"]["selector"]
        matching = [
            c for labels, cs in pods.values() if selector.items() <= labels.items() for c in cs
        ]
        assert matching, f"Service {name} selects no pod"
        ports = {(p["name"], p["protocol"]) for c in matching for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert (port["targetPort"], port["protocol"]) in ports, f"{name}: {port}"
    for deployment in by_kind("Deployment").values():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_relays_take_quic_on_a_udp_load_balancer_and_tcp_behind_an_ingress() -> None:
    services = by_kind("Service")
    quic = services["gruppetto-relay-quic"]["spec"]
    assert quic["type"] == "LoadBalancer"
    assert [(p["port"], p["protocol"]) for p in quic["ports"]] == [(443, "UDP")]
    assert quic["externalTrafficPolicy"] == "Local"
    assert quic["sessionAffinity"] == "ClientIP"
    http = services["gruppetto-relay-http"]["spec"]
    assert {p["protocol"] for p in http["ports"]} == {"TCP"}
    (ingress,) = by_kind("Ingress").values()
    (rule,) = ingress["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "gruppetto-relay-http"
    # the relay reports the QUIC port it binds (/api/info) and the page dials that one:
    # it must be the port the load balancer serves, on the page's own host name
    config = by_kind("ConfigMap")["gruppetto-relay"]["data"]
    assert config["GRUPPETTO_RELAY_QUIC_BIND"].endswith(f":{quic['ports'][0]['port']}")
    sysctls = pod_spec("gruppetto-relay")["securityContext"]["sysctls"]
    assert {"name": "net.ipv4.ip_unprivileged_port_start", "value": "443"} in sysctls
    annotations = services["gruppetto-relay-quic"]["metadata"]["annotations"]
    assert annotations["external-dns.alpha.kubernetes.io/hostname"] == rule["host"]
    assert ingress["spec"]["tls"][0]["hosts"] == [rule["host"]]


def test_the_relay_autoscaler_follows_spectator_sessions() -> None:
    hpa = by_kind("HorizontalPodAutoscaler")["gruppetto-relay"]["spec"]
    target = hpa["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "gruppetto-relay")
    assert "replicas" not in by_kind("Deployment")["gruppetto-relay"]["spec"]
    pods = next(m["pods"] for m in hpa["metrics"] if m["type"] == "Pods")
    metric = pods["metric"]["name"]
    assert metric == "gruppetto_relay_spectators"
    # the relay really exports this gauge, and the adapter serves it under this name
    assert f'"{metric}"' in (ROOT / "edge_relay" / "metrics.py").read_text()
    adapter = yaml.safe_load((K8S / "monitoring" / "prometheus-adapter-values.yaml").read_text())
    (rule,) = adapter["rules"]["custom"]
    assert rule["seriesQuery"].startswith(metric + "{")
    assert rule["name"]["as"] == metric
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    # the autoscaler's target is the cost model's spectators per relay
    assert pods["target"] == {
        "type": "AverageValue",
        "averageValue": str(Assumptions().spectators_per_relay),
    }
    assert hpa["minReplicas"] >= 1
    assert hpa["maxReplicas"] > hpa["minReplicas"]


def test_relay_settings_are_options_the_relay_has() -> None:
    envvars = relay_envvars()
    config = by_kind("ConfigMap")["gruppetto-relay"]["data"]
    assert set(config) <= envvars, set(config) - envvars
    (container,) = pod_spec("gruppetto-relay")["containers"]
    assert container["args"][0] == "relay"
    assert_relay_flags(container["args"][1:])
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(Path(config["GRUPPETTO_RELAY_CREDENTIAL"]).parent) in mounts
    assert config["GRUPPETTO_RELAY_DATA"] in mounts


# --- Compose -------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_the_vendored_compose_schema_is_the_one_documented() -> None:
    data = (SCHEMAS / "compose-spec.json").read_bytes()
    assert hashlib.sha256(data).hexdigest() == COMPOSE_SCHEMA_SHA256
    assert COMPOSE_SCHEMA_SHA256 in (SCHEMAS / "README.md").read_text()


def test_the_compose_file_matches_the_compose_specification() -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)
    # and the schema does reject a broken file (it is really being applied)
    broken = compose()
    broken["services"]["cloud"]["healthcheck"]["intervall"] = "15s"
    assert not validator.is_valid(broken)


def test_compose_runs_the_cloud_and_a_relay_with_health_checks() -> None:
    spec = compose()
    services = spec["services"]
    assert set(services) == {"cloud", "relay"}
    ports = {"cloud": 8000, "relay": 8080}
    for name, service in services.items():
        test = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:{ports[name]}/healthz/ready" in test, name
        assert service["environment"]["GRUPPETTO_HEALTH_URL"].endswith(
            f":{ports[name]}/healthz/ready"
        )
        for volume in service["volumes"]:
            assert volume.split(":")[0] in spec["volumes"], name
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
    assert services["relay"]["depends_on"]["cloud"]["condition"] == "service_healthy"
    build = services["cloud"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (
        DEPLOY / "container" / "Containerfile"
    )
    assert "4433:4433/udp" in services["relay"]["ports"]
    assert services["cloud"]["ports"] == ["127.0.0.1:8000:8000/tcp"]
    command = services["relay"]["command"]
    assert command[0] == "relay"
    assert_relay_flags(command[1:])
    secret = command[command.index("--credential") + 1]
    assert secret == f"/run/secrets/{services['relay']['secrets'][0]}"


# --- systemd -------------------------------------------------------------------------

SYSTEMD = DEPLOY / "systemd"
UNIT = SYSTEMD / "gruppetto-relay.service"


def unit_directives() -> dict[str, list[str]]:
    """The unit's ``Key=value`` lines (continuations joined), every value of each key."""
    text = re.sub(r"\\\n\s*", " ", UNIT.read_text())
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed here: apt-get install systemd")
    return found


def unit_root(tmp_path: Path) -> Path:
    """A file-system root holding the unit, what it refers to, and the system units."""
    root = tmp_path / "root"
    system = next(
        p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()
    )
    shutil.copytree(system, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system" / UNIT.name)
    (root / "etc/gruppetto").mkdir(parents=True)
    shutil.copy(SYSTEMD / "relay.env.example", root / "etc/gruppetto/relay.env")
    executable = root / "opt/gruppetto/.venv/bin/gruppetto"
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    return root


def test_the_relay_unit_verifies(tmp_path: Path) -> None:
    analyze = systemd_analyze()
    root = unit_root(tmp_path)
    out = subprocess.run(
        [analyze, "verify", "--man=no", f"--root={root}", UNIT.name],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert UNIT.name not in out.stdout + out.stderr, out.stdout + out.stderr


def test_the_relay_unit_is_hardened(tmp_path: Path) -> None:
    d = unit_directives()
    for key, value in {
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "StateDirectory": "gruppetto-relay",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
    }.items():
        assert d[key] == [value], key
    families = set(d["RestrictAddressFamilies"][0].split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    assert d["LoadCredential"] == ["relay.key:/etc/gruppetto/relay.key"]
    # systemd's own assessment, offline: 0 is locked down, 10 fully exposed
    analyze = systemd_analyze()
    root = unit_root(tmp_path)
    out = subprocess.run(
        [analyze, "security", "--offline=yes", f"--root={root}", "--no-pager", UNIT.name],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", out.stdout)
    assert match, out.stdout + out.stderr
    assert float(match.group(1)) <= 2.0, out.stdout


def test_the_relay_unit_runs_the_relay_with_its_real_options() -> None:
    d = unit_directives()
    (exec_start,) = d["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[:2] == ["/opt/gruppetto/.venv/bin/gruppetto", "relay"]
    assert_relay_flags(argv[2:])
    environment = dict(
        item.split("=", 1) for line in d["Environment"] for item in shlex.split(line)
    )
    env_file = dict(
        line.split("=", 1)
        for line in (SYSTEMD / "relay.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    envvars = relay_envvars()
    for name in [*environment, *env_file]:
        if name.startswith("GRUPPETTO_"):
            assert name in envvars, f"{name} is not a variable gruppetto relay reads"
    # every ${VAR} the command line uses is set in the example environment file
    for name in re.findall(r"\$\{(\w+)\}", exec_start):
        assert env_file.get(name), f"ExecStart uses ${{{name}}}: set it in relay.env.example"
    assert environment["GRUPPETTO_RELAY_CREDENTIAL"] == "%d/relay.key"
    assert environment["GRUPPETTO_RELAY_DATA"] == "%S/" + d["StateDirectory"][0]


def test_the_udp_buffer_sysctls_are_real_and_large_enough() -> None:
    settings = {}
    for line in (SYSTEMD / "60-gruppetto-quic.conf").read_text().splitlines():
        if line.strip() and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            settings[key.strip()] = int(value.strip())
    for key in ("net.core.rmem_max", "net.core.wmem_max"):
        assert settings[key] >= 7_500_000, key
    # the relay asks for UDP_BUFFER_BYTES on its QUIC sockets: the maxima must allow it
    # (the kernel caps the request silently), and other UDP sockets get the same default
    for key in ("net.core.rmem_max", "net.core.wmem_max"):
        assert settings[key] >= UDP_BUFFER_BYTES, key
    assert settings["net.core.rmem_default"] == settings["net.core.rmem_max"]
    sysctl = Path("/proc/sys")
    if sysctl.is_dir():
        for key in settings:
            assert (sysctl / key.replace(".", "/")).exists(), f"{key} is not a kernel setting"


# --- The container image -------------------------------------------------------------

CONTAINERFILE = DEPLOY / "container" / "Containerfile"


def stages() -> list[list[dict[str, Any]]]:
    with CONTAINERFILE.open("rb") as file:
        parser = DockerfileParser(fileobj=file)
        structure = parser.structure
    result: list[list[dict[str, Any]]] = []
    for instruction in structure:
        if instruction["instruction"] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def values(stage: list[dict[str, Any]], instruction: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == instruction]


def test_the_image_runs_as_a_non_root_user_with_a_health_check() -> None:
    final = stages()[-1]
    (user,) = values(final, "USER")
    assert user.split(":")[0] not in {"root", "0"}
    (healthcheck,) = values(final, "HEALTHCHECK")
    assert "CMD" in healthcheck
    assert "GRUPPETTO_HEALTH_URL" in healthcheck
    env = " ".join(values(final, "ENV"))
    assert "GRUPPETTO_HEALTH_URL=http://127.0.0.1:8000/healthz/ready" in env
    (entrypoint,) = values(final, "ENTRYPOINT")
    assert json.loads(entrypoint) == ["gruppetto"]
    (command,) = values(final, "CMD")
    assert json.loads(command)[:3] == ["cloud", "--data", "/data"]
    exposed = set(" ".join(values(final, "EXPOSE")).split())
    assert exposed == {"8000/tcp", "4433/udp", "8080/tcp"}


def test_the_image_installs_with_the_pinned_constraints() -> None:
    build, final = stages()
    runs = " ".join(values(build, "RUN"))
    assert "pip wheel" in runs
    assert "-c deploy/constraints.txt" in runs
    assert "COPY" in {i["instruction"] for i in build}
    assert "deploy/constraints.txt deploy/constraints.txt" in values(build, "COPY")
    (install,) = [run for run in values(final, "RUN") if "pip install" in run]
    assert "--no-index" in install  # only the wheels built under the constraints
    assert "-c /wheels/constraints.txt" in install


def test_the_image_copies_every_package_and_nothing_it_does_not_need() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    build = stages()[0]
    sources = {part for value in values(build, "COPY") for part in value.split()[:-1]}
    for package in packages:
        assert package in sources, f"the image does not copy {package}/"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
    allowed = {
        line[1:].rstrip("/")
        for line in (CONTAINERFILE.parent / "Containerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for source in sources - {"deploy/constraints.txt"}:
        assert source in allowed, f"{source} is filtered out of the build context"


# --- helpers -------------------------------------------------------------------------


def relay_envvars() -> set[str]:
    names: set[str] = set()
    for param in relay.params:
        if isinstance(param, click.Option) and param.envvar:
            names |= {param.envvar} if isinstance(param.envvar, str) else set(param.envvar)
    return names


def assert_relay_flags(argv: list[str]) -> None:
    """Every ``--flag`` in ``argv`` is an option of ``gruppetto relay``."""
    flags = {
        opt
        for param in relay.params
        for opt in (*param.opts, *getattr(param, "secondary_opts", []))
    }
    used = [arg for arg in argv if arg.startswith("--")]
    assert used
    for flag in used:
        assert flag in flags, f"gruppetto relay has no {flag}"
