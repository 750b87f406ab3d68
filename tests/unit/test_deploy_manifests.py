"""The deployment files, checked offline: deploy/Dockerfile, .dockerignore, docker-compose.yml
and every manifest in deploy/k8s/ (docs/operations.md, "Image and Kubernetes").

Each check is a function that returns the problems it finds; the tests run it on the real files
(no problem allowed) and, in `test_each_check_catches_a_broken_copy`, on a broken copy (a
problem expected), so none of them can pass by checking nothing.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kubernetes_schemas
from yamllint import linter
from yamllint.config import YamlLintConfig

from processor.gateway.gateway_settings import GatewaySettings
from processor.settings import ProcessorSettings
from processor.telemetry import SDK_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"

Obj = dict[str, Any]

# The oldest Kubernetes the manifests are written for, and the newest whose schemas are bundled.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_schemas.latest_version())
# Kinds no bundled schema knows: checked structurally below instead.
CUSTOM_KINDS = {("keda.sh/v1alpha1", "ScaledObject"), ("keda.sh/v1alpha1", "TriggerAuthentication"), ("kustomize.config.k8s.io/v1beta1", "Kustomization")}
# Files kept out of kustomization.yaml on purpose (their own comments say why).
NOT_IN_KUSTOMIZATION = {"kustomization.yaml", "secrets.example.yaml", "migrate-job.yaml"}
# Secret keys that hold settings, not secrets (KEDA's auth parameters).
NON_SECRET_KEYS = {"sasl", "tls", "username"}
YAMLLINT = YamlLintConfig("extends: default\nrules:\n  line-length: {max: 200}\n  document-start: disable\n")
# Compilers and build tools the final stage must not install.
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|make|build-essential|[\w.+]+-dev)\b")
QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
UNITS = {None: 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


# ------------------------------------------------------------------------------- the files


def manifest_paths() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


def load_documents(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def all_objects() -> list[Obj]:
    return [doc for path in manifest_paths() for doc in load_documents(path)]


def objects_of(kind: str, objects: list[Obj] | None = None) -> list[Obj]:
    return [obj for obj in (all_objects() if objects is None else objects) if obj.get("kind") == kind]


def named(kind: str, name: str, objects: list[Obj] | None = None) -> Obj:
    matches = [obj for obj in objects_of(kind, objects) if obj["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Obj) -> list[Obj]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def config_data(name: str, objects: list[Obj] | None = None) -> dict[str, str]:
    data: dict[str, str] = named("ConfigMap", name, objects)["data"]
    return data


def image_uid() -> int:
    """The numeric user the image runs as (its final stage's USER)."""
    user = final_stage(dockerfile_stages(DOCKERFILE.read_text()))["USER"][-1]
    return int(user.split(":")[0])


# ---------------------------------------------------------------------- checks: YAML, schemas


def lint_problems(text: str) -> list[str]:
    return [f"line {p.line}: {p.desc} ({p.rule})" for p in linter.run(text, YAMLLINT)]


def schema_problems(obj: Obj, version: str) -> list[str]:
    if (obj.get("apiVersion"), obj.get("kind")) in CUSTOM_KINDS:
        return []
    try:
        kubernetes_validate.validate(obj, version, strict=True)  # strict: unknown fields are errors
    except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as error:
        return [f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}: {str(error).splitlines()[0]}"]
    return []


# --------------------------------------------------------------------- checks: pods, services


def quantity(value: str | int) -> Decimal:
    match = QUANTITY.match(str(value))
    assert match, f"{value!r} is not a Kubernetes quantity"
    return Decimal(match.group(1)) * UNITS[match.group(2)]


def resource_problems(container: Obj) -> list[str]:
    resources = container.get("resources", {})
    problems = []
    for resource in ("cpu", "memory"):
        request, limit = resources.get("requests", {}).get(resource), resources.get("limits", {}).get(resource)
        if request is None or limit is None:
            problems.append(f"{container['name']}: no {resource} request or limit")
        elif quantity(request) > quantity(limit):
            problems.append(f"{container['name']}: {resource} request {request} above its limit {limit}")
    return problems


def container_security_problems(container: Obj) -> list[str]:
    context = container.get("securityContext", {})
    wanted = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True}
    problems = [f"{container['name']}: securityContext.{key} is not {value}" for key, value in wanted.items() if context.get(key) is not value]
    if context.get("capabilities", {}).get("drop") != ["ALL"]:
        problems.append(f"{container['name']}: capabilities do not drop ALL")
    return problems


def pod_problems(workload: Obj, *, uid: int) -> list[str]:
    """A workload's pods: non-root as the image's own user, locked down, with resources."""
    spec = pod_spec(workload)
    context = spec.get("securityContext", {})
    problems = []
    if context.get("runAsNonRoot") is not True or context.get("runAsUser") != uid:
        problems.append(f"{workload['metadata']['name']}: the pod must run as non-root user {uid}, the image's")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{workload['metadata']['name']}: mounts a service account token it never uses")
    for container in containers(workload):
        problems += container_security_problems(container) + resource_problems(container)
    return problems


def probe_problems(deployment: Obj, *, http_paths: set[str]) -> list[str]:
    """Every container is probed; an HTTP probe asks a path the app serves on a declared port."""
    problems = []
    for container in containers(deployment):
        ports = {port.get("name") for port in container.get("ports", [])} | {port["containerPort"] for port in container.get("ports", [])}
        for kind in ("livenessProbe", "readinessProbe"):
            probe = container.get(kind)
            if probe is None:
                problems.append(f"{container['name']}: no {kind}")
            elif "httpGet" in probe and (probe["httpGet"]["path"] not in http_paths or probe["httpGet"]["port"] not in ports):
                problems.append(f"{container['name']}: {kind} asks {probe['httpGet']} which the container does not serve")
    return problems


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def disruption_problems(objects: list[Obj]) -> list[str]:
    """Every Deployment has a PodDisruptionBudget that selects its pods."""
    budgets = objects_of("PodDisruptionBudget", objects)
    return [
        f"Deployment {deployment['metadata']['name']} has no PodDisruptionBudget"
        for deployment in objects_of("Deployment", objects)
        if not any(selects(budget["spec"]["selector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"]) for budget in budgets)
    ]


def service_problems(service: Obj, objects: list[Obj]) -> list[str]:
    """A Service selects a Deployment's pods and targets a port they declare."""
    pods = [d for d in objects_of("Deployment", objects) if selects(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
    if not pods:
        return [f"Service {service['metadata']['name']} selects no Deployment's pods"]
    ports = {p.get("name") for c in containers(pods[0]) for p in c.get("ports", [])} | {p["containerPort"] for c in containers(pods[0]) for p in c.get("ports", [])}
    return [f"Service {service['metadata']['name']} targets {p['targetPort']}, not a port of its pods" for p in service["spec"]["ports"] if p["targetPort"] not in ports]


# ------------------------------------------------------------ checks: settings, secrets, KEDA


def known_settings() -> set[str]:
    """Every environment variable the processor and the gateway read: a setting's own name
    (its aliases when it has any), and the OpenTelemetry SDK's that processor/telemetry.py names."""
    names: set[str] = set(SDK_SETTINGS)
    for name, field in GatewaySettings.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names.add(f"CLOUDWALLET_{name.upper()}")
        else:
            names.update([alias] if isinstance(alias, str) else [str(choice) for choice in alias.choices])
    return names


def setting_problems(names: Iterator[str] | list[str]) -> list[str]:
    """A setting name the code does not read would be silently ignored (extra="ignore")."""
    known = known_settings()
    return [f"{name} is not a setting of processor/settings.py or the gateway's" for name in names if name not in known]


def container_env_names(workload: Obj, objects: list[Obj]) -> list[str]:
    names = []
    for container in containers(workload):
        names += [item["name"] for item in container.get("env", [])]
        for source in container.get("envFrom", []):
            names += list(config_data(source["configMapRef"]["name"], objects))
    return names


def secret_problems(secret: Obj) -> list[str]:
    """Secrets in the repository hold placeholders only."""
    values = {**secret.get("stringData", {}), **secret.get("data", {})}
    return [f"Secret {secret['metadata']['name']}: {key} is not a PLACEHOLDER" for key, value in values.items() if key not in NON_SECRET_KEYS and "PLACEHOLDER" not in str(value)]


def scaled_object_problems(scaled: Obj, objects: list[Obj]) -> list[str]:
    """KEDA scales the processor Deployment on its group's lag on the requests topic, never
    beyond that topic's partition count (the code's default and the ConfigMap's)."""
    problems = []
    if scaled.get("apiVersion") != "keda.sh/v1alpha1":
        problems.append(f"ScaledObject apiVersion {scaled.get('apiVersion')} is not keda.sh/v1alpha1")
    target = scaled["spec"]["scaleTargetRef"]
    if target.get("kind", "Deployment") != "Deployment" or target["name"] != "cloudwallet-processor":
        problems.append(f"ScaledObject targets {target}, not the processor Deployment")
    problems += replica_problems(scaled["spec"], objects)
    for trigger in scaled["spec"]["triggers"]:
        problems += kafka_trigger_problems(trigger, objects)
    return problems


def replica_problems(spec: Obj, objects: list[Obj]) -> list[str]:
    config = config_data("cloudwallet-config", objects)
    partitions = min(ProcessorSettings.model_fields["requests_partitions"].default, int(config.get("CLOUDWALLET_REQUESTS_PARTITIONS", 10**6)))
    low, high = spec.get("minReplicaCount", 0), spec["maxReplicaCount"]
    if not 1 <= low <= high <= partitions:
        return [f"replicas {low}..{high} must lie within 1..{partitions} (the requests topic's partitions)"]
    return []


def kafka_trigger_problems(trigger: Obj, objects: list[Obj]) -> list[str]:
    config = config_data("cloudwallet-config", objects)
    meta = trigger.get("metadata", {})
    expected = {
        "topic": (ProcessorSettings.model_fields["requests_topic"].default, config.get("CLOUDWALLET_REQUESTS_TOPIC")),
        "consumerGroup": (ProcessorSettings.model_fields["consumer_group"].default, config.get("CLOUDWALLET_CONSUMER_GROUP")),
    }
    problems = [f"the {trigger.get('type')} trigger is not kafka"] if trigger.get("type") != "kafka" else []
    problems += [f"trigger {key} {meta.get(key)!r} is not the code's {wanted!r} and the ConfigMap's" for key, wanted in expected.items() if {meta.get(key)} != set(wanted)]
    processor = named("Deployment", "cloudwallet-processor", objects)
    if meta.get("bootstrapServersFromEnv") not in container_env_names(processor, objects):
        problems.append(f"bootstrapServersFromEnv {meta.get('bootstrapServersFromEnv')!r} is no variable of the processor's container")
    return problems + authentication_problems(trigger, objects)


def authentication_problems(trigger: Obj, objects: list[Obj]) -> list[str]:
    """The trigger's TriggerAuthentication exists and reads keys its Secret has."""
    auth = named("TriggerAuthentication", trigger["authenticationRef"]["name"], objects)
    problems = []
    for ref in auth["spec"]["secretTargetRef"]:
        secret = named("Secret", ref["name"], objects)
        if ref["key"] not in secret.get("stringData", {}) | secret.get("data", {}):
            problems.append(f"TriggerAuthentication reads {ref['key']} that Secret {ref['name']} lacks")
    return problems


# ----------------------------------------------------------------- checks: Dockerfile, compose


def dockerfile_stages(text: str) -> list[dict[str, list[str]]]:
    """The Dockerfile's stages: instruction name -> its arguments, in order; "ARG" of the
    preamble (before the first FROM) is stage 0's."""
    stages: list[dict[str, list[str]]] = [{}]
    for line in re.sub(r"\\\n", " ", text).splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        instruction, _, arguments = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append({})
        stages[-1].setdefault(instruction.upper(), []).append(arguments.strip())
    return stages


def final_stage(stages: list[dict[str, list[str]]]) -> dict[str, list[str]]:
    return stages[-1]


def base_image(stage: dict[str, list[str]], preamble: dict[str, list[str]]) -> str:
    """The stage's FROM with the preamble's ARG defaults filled in."""
    defaults = dict(arg.partition("=")[::2] for arg in preamble.get("ARG", []))
    image = stage["FROM"][0].split()[0]
    return re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), m.group(0)), image)


def dockerfile_problems(text: str) -> list[str]:
    stages = dockerfile_stages(text)
    preamble, final = stages[0], final_stage(stages)
    problems = []
    user = (final.get("USER") or ["root"])[-1].split(":")[0]
    if not user.isdigit() or int(user) == 0:
        problems.append(f"the final stage's USER {user!r} is not a numeric non-root user")
    if "slim" not in base_image(final, preamble):
        problems.append(f"the final stage is not based on a slim Python: {base_image(final, preamble)}")
    if not any("wheel" in run for stage in stages[1:-1] for run in stage.get("RUN", [])):
        problems.append("no build stage builds a wheel")
    runs = " ".join(final.get("RUN", []))
    problems += [f"the final stage installs the build tool {tool}" for tool in BUILD_TOOLS.findall(runs)]
    problems += [f"the final stage copies {c} from the build context" for c in final.get("COPY", []) if "--from=" not in c]
    return problems + command_problems(final)


def command_problems(final: dict[str, list[str]]) -> list[str]:
    """The default command is a script pyproject.toml installs (the processor)."""
    scripts = re.search(r"\[project\.scripts\]\n(.*?)\n\n", (ROOT / "pyproject.toml").read_text(), re.S)
    names = {line.split("=")[0].strip() for line in scripts.group(1).splitlines()} if scripts else set()
    command = yaml.safe_load(final.get("CMD", ["[]"])[-1])
    if not command or command[0] not in names:
        return [f"the image's CMD {command} runs none of pyproject's scripts {sorted(names)}"]
    return []


def compose_app_services(doc: Obj) -> dict[str, Obj]:
    """The compose services that run the image of deploy/Dockerfile."""
    services: dict[str, Obj] = doc["services"]
    return {name: service for name, service in services.items() if service.get("image", "").startswith("cloudwallet")}


INLINE_SECRET = re.compile(r"PASSWORD|SECRET|TOKEN|SIGNING_KEY$")


def compose_secret_problems(doc: Obj) -> list[str]:
    """No secret inline: no password-like variable holds a value, no URL carries a password,
    every `secrets:` entry is a file."""
    problems = []
    for name, service in doc["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if INLINE_SECRET.search(key) and not key.endswith("_FILE"):
                problems.append(f"{name}: {key} holds a secret inline")
            if re.search(r"://[^/@\s]+:[^/@\s]+@", str(value)):
                problems.append(f"{name}: {key} carries a password in its URL")
    problems += [f"secret {name} is not read from a file" for name, secret in (doc.get("secrets") or {}).items() if set(secret) != {"file"}]
    return problems


def compose_problems(doc: Obj, *, uid: int) -> list[str]:
    """The processor and the gateway run the image, as its user, with the secured settings and
    their own database roles."""
    apps = compose_app_services(doc)
    problems = [f"no compose service {name} runs the image" for name in ("processor", "gateway") if name not in apps]
    roles = {}
    for name, service in apps.items():
        env = service.get("environment") or {}
        problems += setting_problems([key for key in env if key.startswith(("CLOUDWALLET_", "KAFKA_", "DATABASE_", "OTEL_"))])
        if str(service.get("user", "")).split(":")[0] != str(uid) or service.get("read_only") is not True:
            problems.append(f"{name}: not run as the image's user {uid} on a read-only root")
        if name in ("processor", "gateway"):
            problems += secured_service_problems(name, env)
            roles[name] = re.sub(r"^[^:]+://([^@:]+)@.*$", r"\1", env.get("DATABASE_URL", ""))
    if roles and roles != {"processor": "cloudwallet_processor", "gateway": "cloudwallet_gateway"}:
        problems.append(f"the processor and the gateway must use their own database roles, not {roles}")
    return problems + compose_secret_problems(doc)


def secured_service_problems(name: str, env: Obj) -> list[str]:
    wanted = {"CLOUDWALLET_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CLOUDWALLET_REQUIRE_SIGNATURES": "true", "CLOUDWALLET_KAFKA_USERNAME": name}
    return [f"{name}: {key} is {env.get(key)!r}, not {value!r}" for key, value in wanted.items() if str(env.get(key)) != value]


# ------------------------------------------------------------------------------------ tests


def gateway_paths() -> set[str]:
    from processor.gateway.routes import ROUTERS

    return {route.path for router in ROUTERS for route in router.routes}  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", [*manifest_paths(), COMPOSE], ids=lambda p: p.name)
def test_yaml_parses_and_lints_clean(path: Path) -> None:
    assert load_documents(path), f"{path.name} holds no document"
    assert lint_problems(path.read_text()) == []


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_standard_objects_validate_against_the_kubernetes_schemas(version: str) -> None:
    if version not in kubernetes_schemas.all_versions():
        pytest.skip(f"kubernetes-validate {kubernetes_validate.version.__version__} bundles no schemas of Kubernetes {version}")
    objects = all_objects()
    standard = [obj for obj in objects if (obj.get("apiVersion"), obj.get("kind")) not in CUSTOM_KINDS]
    assert {obj["kind"] for obj in standard} >= {"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget"}
    assert [problem for obj in standard for problem in schema_problems(obj, version)] == []


def test_each_custom_kind_is_there_for_its_structural_check() -> None:
    # A kind with no bundled schema and not in CUSTOM_KINDS fails the schema test instead.
    kinds = {(obj.get("apiVersion"), obj.get("kind")) for obj in all_objects()}
    assert kinds & CUSTOM_KINDS == CUSTOM_KINDS


def test_kustomization_names_every_manifest_but_the_secrets_and_the_migration() -> None:
    kustomization = load_documents(K8S / "kustomization.yaml")[0]
    listed = set(kustomization["resources"])
    assert listed == {path.name for path in manifest_paths()} - NOT_IN_KUSTOMIZATION
    assert [image["name"] for image in kustomization["images"]] == ["cloudwallet"]


def test_pods_run_locked_down_as_the_images_user() -> None:
    workloads = objects_of("Deployment") + objects_of("Job")
    assert len(workloads) >= 3
    assert [problem for workload in workloads for problem in pod_problems(workload, uid=image_uid())] == []


def processor_paths() -> set[str]:
    from processor.stream.health import health_app

    return {route.path for route in health_app(None).routes}  # type: ignore[arg-type, attr-defined]


def test_deployments_are_probed_and_have_disruption_budgets() -> None:
    paths = gateway_paths() | processor_paths()
    assert "/health" in paths  # the gateway's probe path (processor/gateway/routes/health.py)
    assert {"/health/live", "/health/ready"} <= paths  # the processor's (processor/stream/health.py)
    assert [problem for d in objects_of("Deployment") for problem in probe_problems(d, http_paths=paths)] == []
    assert disruption_problems(all_objects()) == []


def test_services_reach_their_pods() -> None:
    services = objects_of("Service")
    assert services
    assert [problem for service in services for problem in service_problems(service, all_objects())] == []


def test_every_setting_named_is_one_the_code_reads() -> None:
    objects = all_objects()
    names = [name for workload in objects_of("Deployment", objects) + objects_of("Job", objects) for name in container_env_names(workload, objects)]
    assert "KAFKA_BOOTSTRAP_SERVERS" in names
    assert setting_problems(names) == []


def test_secrets_in_the_repository_are_placeholders() -> None:
    secrets = objects_of("Secret")
    assert {secret["metadata"]["name"] for secret in secrets} >= {"cloudwallet-processor", "cloudwallet-gateway"}
    assert [problem for secret in secrets for problem in secret_problems(secret)] == []
    assert all(obj["kind"] != "Secret" for path in manifest_paths() if path.name != "secrets.example.yaml" for obj in load_documents(path))


def test_keda_scales_the_processor_within_the_partition_count() -> None:
    objects = all_objects()
    scaled = objects_of("ScaledObject", objects)
    assert len(scaled) == 1
    assert scaled_object_problems(scaled[0], objects) == []
    # The ScaledObject owns the count: a Deployment `replicas` would reset it on every apply.
    assert "replicas" not in named("Deployment", "cloudwallet-processor", objects)["spec"]


def test_the_image_is_multi_stage_slim_and_non_root() -> None:
    text = DOCKERFILE.read_text()
    assert len(dockerfile_stages(text)) >= 3  # the preamble, a build stage, the final stage
    assert dockerfile_problems(text) == []


def test_the_build_context_is_an_allow_list() -> None:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"  # everything out (the venv, .git, local secrets) ...
    assert {"!pyproject.toml", "!README.md", "!processor/", "!schemas/"} <= set(lines)  # ... but what builds the wheel
    copied = {c.split()[0] for stage in dockerfile_stages(DOCKERFILE.read_text()) for c in stage.get("COPY", []) if "--from=" not in c}
    assert copied <= {"pyproject.toml", "schemas", "processor"}


def test_compose_runs_the_image_secured_with_no_secret_inline() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert compose_problems(doc, uid=image_uid()) == []


# ------------------------------------------------------------- each check can fail


def _broken(mutate: Callable[[Obj], None], obj: Obj) -> Obj:
    broken = copy.deepcopy(obj)
    mutate(broken)
    return broken


def _processor() -> Obj:
    return named("Deployment", "cloudwallet-processor")


def _with_scaled(mutate: Callable[[Obj], None]) -> list[str]:
    objects = all_objects()
    scaled = _broken(mutate, objects_of("ScaledObject", objects)[0])
    return scaled_object_problems(scaled, objects)


def _compose(mutate: Callable[[Obj], None]) -> list[str]:
    return compose_problems(_broken(mutate, yaml.safe_load(COMPOSE.read_text())), uid=image_uid())


BROKEN_COPIES: dict[str, Callable[[], list[str]]] = {
    "yaml": lambda: lint_problems("a: 1\na: 2\n"),
    "schema: unknown field": lambda: schema_problems(_broken(lambda d: d["spec"]["template"]["spec"]["containers"][0].update(securityContex={}), _processor()), "1.30.0"),
    "schema: wrong type": lambda: schema_problems(_broken(lambda d: d["spec"].update(revisionHistoryLimit="five"), _processor()), "1.30.0"),
    "pod: root": lambda: pod_problems(_broken(lambda d: d["spec"]["template"]["spec"]["securityContext"].update(runAsUser=0), _processor()), uid=image_uid()),
    "pod: capabilities": lambda: pod_problems(_broken(lambda d: d["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"].update(drop=[]), _processor()), uid=image_uid()),
    "pod: writable root": lambda: pod_problems(_broken(lambda d: d["spec"]["template"]["spec"]["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False), _processor()), uid=image_uid()),
    "pod: no limits": lambda: pod_problems(_broken(lambda d: d["spec"]["template"]["spec"]["containers"][0]["resources"].pop("limits"), _processor()), uid=image_uid()),
    "pod: request over limit": lambda: pod_problems(_broken(lambda d: d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"].update(memory="4Gi"), _processor()), uid=image_uid()),
    "probe: missing": lambda: probe_problems(_broken(lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("readinessProbe"), _processor()), http_paths=gateway_paths()),
    "probe: invented path": lambda: probe_problems(
        _broken(lambda d: d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"].update(path="/healthz"), named("Deployment", "cloudwallet-gateway")), http_paths=gateway_paths()
    ),
    "pdb: missing": lambda: disruption_problems([o for o in all_objects() if o["kind"] != "PodDisruptionBudget"]),
    "service: wrong port": lambda: service_problems(_broken(lambda s: s["spec"]["ports"][0].update(targetPort="grpc"), objects_of("Service")[0]), all_objects()),
    "setting: guessed name": lambda: setting_problems(["CLOUDWALLET_HEALTHZ_PORT"]),
    "secret: real value": lambda: secret_problems({"metadata": {"name": "x"}, "stringData": {"kafka-password": "hunter2hunter2"}}),
    "keda: over the partitions": lambda: _with_scaled(lambda s: s["spec"].update(maxReplicaCount=ProcessorSettings.model_fields["requests_partitions"].default + 1)),
    "keda: wrong target": lambda: _with_scaled(lambda s: s["spec"]["scaleTargetRef"].update(name="cloudwallet-gateway")),
    "keda: wrong api": lambda: _with_scaled(lambda s: s.update(apiVersion="keda.sh/v1beta9")),
    "keda: wrong topic": lambda: _with_scaled(lambda s: s["spec"]["triggers"][0]["metadata"].update(topic="wallet.results")),
    "keda: wrong group": lambda: _with_scaled(lambda s: s["spec"]["triggers"][0]["metadata"].update(consumerGroup="someone-else")),
    "keda: unknown env": lambda: _with_scaled(lambda s: s["spec"]["triggers"][0]["metadata"].update(bootstrapServersFromEnv="KAFKA_BROKERS")),
    "dockerfile: root": lambda: dockerfile_problems(DOCKERFILE.read_text().replace("USER 10001:10001", "USER root")),
    "dockerfile: no user": lambda: dockerfile_problems(DOCKERFILE.read_text().replace("USER 10001:10001", "")),
    "dockerfile: compiler": lambda: dockerfile_problems(DOCKERFILE.read_text() + "RUN apt-get install -y gcc\n"),
    "dockerfile: sources in final": lambda: dockerfile_problems(DOCKERFILE.read_text() + "COPY processor /app/processor\n"),
    "dockerfile: full base": lambda: dockerfile_problems(DOCKERFILE.read_text().replace("python:3.12-slim-bookworm", "python:3.12-bookworm")),
    "compose: inline password": lambda: _compose(lambda d: d["services"]["processor"]["environment"].update(CLOUDWALLET_KAFKA_PASSWORD="hunter2")),
    "compose: password in url": lambda: _compose(lambda d: d["services"]["gateway"]["environment"].update(DATABASE_URL="postgresql://cloudwallet_gateway:pw@postgres/cloudwallet")),
    "compose: secret from env": lambda: _compose(lambda d: d["secrets"].update(leaked={"environment": "PASSWORD"})),
    "compose: plaintext": lambda: _compose(lambda d: d["services"]["processor"]["environment"].update(CLOUDWALLET_KAFKA_SECURITY_PROTOCOL="PLAINTEXT")),
    "compose: unsigned": lambda: _compose(lambda d: d["services"]["processor"]["environment"].update(CLOUDWALLET_REQUIRE_SIGNATURES="false")),
    "compose: shared role": lambda: _compose(lambda d: d["services"]["gateway"]["environment"].update(DATABASE_URL="postgresql+psycopg://cloudwallet_processor@postgres/cloudwallet")),
    "compose: root": lambda: _compose(lambda d: d["services"]["gateway"].update(user="0:0")),
}


@pytest.mark.parametrize("name", list(BROKEN_COPIES))
def test_each_check_catches_a_broken_copy(name: str) -> None:
    assert BROKEN_COPIES[name](), f"the check did not notice: {name}"


def commands_run() -> list[list[str]]:
    """Every `cloudwallet ...` command line the manifests and compose run in the image."""
    commands = [shlex.split(c["args"][0].split("exec ", 1)[1]) for w in objects_of("Deployment") + objects_of("Job") for c in containers(w)]
    compose = compose_app_services(yaml.safe_load(COMPOSE.read_text()))
    return commands + [service["command"] for service in compose.values() if service["command"][0] == "cloudwallet"]


@pytest.mark.parametrize("command", commands_run(), ids=" ".join)
def test_every_command_run_is_one_the_cli_parses(command: list[str]) -> None:
    from processor.cli import main

    assert command[0] == "cloudwallet"
    with pytest.raises(SystemExit) as done:  # --help after the options: they parse, then exit 0
        main([*command[1:], "--help"])
    assert done.value.code == 0


# --- the Grafana dashboard --------------------------------------------------------------------

GRAFANA = ROOT / "deploy" / "grafana" / "cloudwallet.json"


def dashboard_metric_problems(dashboard: dict[str, Any]) -> list[str]:
    """Every metric a panel queries is one the processor or the gateway defines."""
    from prometheus_client import REGISTRY

    import processor.gateway.request_metrics  # noqa: F401 - registers the gateway's metrics
    import processor.stream.metrics  # noqa: F401 - registers the processor's

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    known = {family.name + suffix for family in REGISTRY.collect() for suffix in suffixes.get(family.type, ("",))}
    problems = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"\b(cloudwallet_[a-z_]+)\b", target["expr"]):
                if name not in known:
                    problems.append(f"panel {panel['title']!r} queries {name}, which nothing exports")
    return problems


def test_the_grafana_dashboard_queries_only_metrics_that_exist() -> None:
    dashboard = json.loads(GRAFANA.read_text())
    assert dashboard["panels"] and dashboard_metric_problems(dashboard) == []
    broken = json.loads(GRAFANA.read_text())
    broken["panels"][0]["targets"][0]["expr"] = "rate(cloudwallet_results_count_total[1m])"
    assert dashboard_metric_problems(broken) != []  # the check can fail
