"""The K3s target: manifests (rendered and validated offline), the driver's command sequence
against fake kubectl/k3s/docker/bentoml on PATH, its error paths, the K3s faults, the
workflow's choice of driver, and (marked `cluster`) a server-side dry run on a real cluster."""

from __future__ import annotations

import copy
import csv
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import yaml
from k3s_fakes import install_fakes, recorded, write_spec

from servebench.config import config_errors, deep_merge, load_config
from servebench.deploy.k3s import commands, driver, kustomize, manifests
from servebench.fault_kinds import faults_of
from servebench.jobs import scenario as scenario_job
from servebench.matrix import RunSpec
from servebench.net import http_get
from servebench.records import RunSummary
from servebench.settings import K3S_VARIANT_AXES, K3sTarget

OVERLAYS = sorted(path for path in manifests.OVERLAYS_DIR.iterdir() if path.is_dir())
TAG = "sentiment-baseline:0123456789abcdef"
IMAGE = "servebench/sentiment-baseline:0123456789abcdef"
HASH = "fedcba9876543210"


# ------------------------------------------------------------------------------ manifests


def _committed_tag(overlay: Path) -> str:
    """The image tag of a committed overlay: the version of the Bento it was rendered from."""
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    return kustomization["images"][0]["newTag"]


def test_committed_overlays_are_what_the_default_config_generates(tmp_path):
    config = load_config()
    targets = {name: K3sTarget.of(config, name) for name in config["experiment"]["variants"]}
    # Their images carry the content hash of the Bentos they were rendered from (records in
    # results/bentos/ at `servebench k3s-render` time), never `latest`.
    tags = {}
    for name in targets:
        tag = _committed_tag(manifests.OVERLAYS_DIR / name)
        assert re.fullmatch(r"[0-9a-f]{16}", tag), f"{name}: image tag {tag!r} is no content hash"
        tags[name] = f"sentiment-{name}:{tag}"
    written = manifests.write_committed_overlays(targets, tags, tmp_path)
    assert [path.name for path in OVERLAYS] == sorted(config["experiment"]["variants"])
    for directory in written:
        committed = manifests.OVERLAYS_DIR / directory.name / "kustomization.yaml"
        # Written elsewhere, an overlay refers to k3s/base by its relative path from there.
        base = os.path.relpath(manifests.BASE_DIR.resolve(), directory.resolve())
        assert kustomize.render(directory)
        text = (directory / "kustomization.yaml").read_text()
        assert text.replace(f"- {base}\n", "- ../../base\n") == committed.read_text(), (
            f"{committed} is stale: regenerate with `servebench k3s-render`"
        )


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[path.name for path in OVERLAYS])
def test_every_overlay_renders_and_validates_strictly(overlay):
    resources = kustomize.render(overlay)
    kinds = sorted(resource["kind"] for resource in resources)
    assert kinds == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
    ]
    assert manifests.validation_errors(resources) == []
    assert {resource["metadata"]["namespace"] for resource in resources} == {"servebench"}
    by_kind = {resource["kind"]: resource for resource in resources}
    deployment = by_kind["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == f"servebench/sentiment-{overlay.name}:{_committed_tag(overlay)}"
    # A drain goes on at the default replica count: one pod at a time.
    assert by_kind["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in by_kind["PodDisruptionBudget"]["spec"]
    # Every writable path is a size-limited emptyDir (the root filesystem is read-only).
    limits = load_config()["deploy"]["k3s"]["volume_size_limits"]
    assert {v["name"]: v["emptyDir"]["sizeLimit"] for v in pod["volumes"]} == limits
    mounted = {mount["name"] for mount in container["volumeMounts"]}
    assert mounted == set(limits)
    # Ingress only on the service port (3000, named http), to the service's pods.
    policy = by_kind["NetworkPolicy"]["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "sentiment"}}
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "1536Mi"},
        "limits": {"cpu": "1", "memory": "3Gi"},
    }
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert deployment["metadata"]["labels"]["servebench.io/variant"] == overlay.name
    # The startup probe waits as long as deploy.ready_timeout_s.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


def _config(**k3s_settings) -> dict:
    return deep_merge(load_config(), {"deploy": {"k3s": k3s_settings}})


def k3s_server(config: dict, record: dict, out):
    """The driver with the K3s settings of the record's variant, as the jobs build them."""
    return driver.k3s_server(K3sTarget.of(config, record.get("variant")), record, out)


def test_config_values_reach_the_manifests_and_node_port_adds_a_service(tmp_path):
    settings = K3sTarget.of(
        _config(
            replicas=3,
            max_replicas=5,
            pdb_min_available=2,
            access="node-port",
            node_port=31234,
            image_registry="registry.example:5000",
            image_transfer="push",
            read_only_root_filesystem=False,
            resources={"requests": {"cpu": "500m", "memory": "1Gi"}},
            volume_size_limits={"tmp": "1Gi"},
        )
    )
    image = manifests.image_name(settings, TAG)
    assert image == ("registry.example:5000/servebench/sentiment-baseline", "0123456789abcdef")
    overlay = manifests.stage_run_manifests(tmp_path, settings, "baseline", image, 120)
    resources = kustomize.render(overlay)
    assert manifests.validation_errors(resources) == []
    by_kind = {}
    for resource in resources:
        by_kind.setdefault(resource["kind"], []).append(resource)
    deployment = by_kind["Deployment"][0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["spec"]["replicas"] == 3
    assert (
        container["image"] == "registry.example:5000/servebench/sentiment-baseline:0123456789abcdef"
    )
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is False
    assert container["startupProbe"]["failureThreshold"] == 24
    sizes = {
        v["name"]: v["emptyDir"]["sizeLimit"]
        for v in deployment["spec"]["template"]["spec"]["volumes"]
    }
    assert sizes == {"tmp": "1Gi", "prometheus": "64Mi", "cache": "256Mi"}
    hpa = by_kind["HorizontalPodAutoscaler"][0]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 5)
    assert by_kind["PodDisruptionBudget"][0]["spec"]["minAvailable"] == 2
    services = {s["metadata"]["name"]: s["spec"] for s in by_kind["Service"]}
    assert services["sentiment"]["type"] == "ClusterIP"
    assert services["sentiment-nodeport"]["ports"][0]["nodePort"] == 31234
    # What the run applies is kept in its folder.
    assert yaml.safe_load_all((tmp_path / "k3s" / "manifests.yaml").read_text())


def _two_replica_variants() -> dict:
    """The default config plus `optimized-3r`: the optimized variant with 3 replicas and a PDB
    of 2, nothing else different."""
    config = load_config()
    variant = copy.deepcopy(config["variants"]["optimized"])
    variant["k3s"] = {"replicas": 3, "pdb_min_available": 2, "max_replicas": None}
    config["variants"]["optimized-3r"] = variant
    config["experiment"]["variants"] = ["optimized", "optimized-3r"]
    from servebench.config import check_config

    check_config(config)
    return config


def test_a_variant_sets_its_own_replicas_and_pdb_over_deploy_k3s():
    config = _two_replica_variants()
    config["deploy"]["k3s"]["max_replicas"] = 4
    own = K3sTarget.of(config, "optimized-3r")
    assert (own.replicas, own.pdb_min_available, own.max_replicas) == (3, 2, 4)
    inherited = K3sTarget.of(config, "optimized")
    assert (inherited.replicas, inherited.pdb_min_available) == (1, None)
    assert K3sTarget.of(config) == inherited
    # Everything else is deploy.k3s for both.
    assert {k: v for k, v in own.as_dict().items() if k not in K3S_VARIANT_AXES} == {
        k: v for k, v in inherited.as_dict().items() if k not in K3S_VARIANT_AXES
    }


def test_two_variants_differing_only_by_replicas_render_different_valid_overlays(tmp_path):
    config = _two_replica_variants()
    targets = {name: K3sTarget.of(config, name) for name in config["experiment"]["variants"]}
    tags = {name: f"sentiment-{name}:{HASH}" for name in targets}
    written = manifests.write_committed_overlays(targets, tags, tmp_path / "overlays")
    assert [path.name for path in written] == ["optimized", "optimized-3r"]
    rendered = {}
    for directory in written:
        resources = kustomize.render(directory)
        assert manifests.validation_errors(resources) == [], directory.name
        rendered[directory.name] = {resource["kind"]: resource for resource in resources}
    one, three = rendered["optimized"], rendered["optimized-3r"]
    assert one["Deployment"]["spec"]["replicas"] == 1
    assert three["Deployment"]["spec"]["replicas"] == 3
    assert (one["HorizontalPodAutoscaler"]["spec"]["minReplicas"], 3) == (
        1,
        three["HorizontalPodAutoscaler"]["spec"]["minReplicas"],
    )
    # max_replicas (1 in deploy.k3s) is raised to the variant's replicas: a fixed pod count.
    assert three["HorizontalPodAutoscaler"]["spec"]["maxReplicas"] == 3
    # The default PDB lets a drain go on, one pod at a time; a variant's own is a minAvailable.
    assert one["PodDisruptionBudget"]["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "sentiment"}},
    }
    assert three["PodDisruptionBudget"]["spec"]["minAvailable"] == 2
    assert "maxUnavailable" not in three["PodDisruptionBudget"]["spec"]
    # The containers are the same but for the image of each variant's Bento.
    containers = [
        copy.deepcopy(r["Deployment"]["spec"]["template"]["spec"]["containers"][0])
        for r in (one, three)
    ]
    assert [c.pop("image") for c in containers] == [
        f"servebench/sentiment-optimized:{HASH}",
        f"servebench/sentiment-optimized-3r:{HASH}",
    ]
    assert containers[0] == containers[1]
    assert one["Service"] == three["Service"]


def test_the_driver_deploys_the_variants_replicas(tmp_path, fakes):
    config = _two_replica_variants()
    config["deploy"]["k3s"].update(K3S_CONFIG)
    record = {**_record(tmp_path), "variant": "optimized-3r", "tag": "sentiment-optimized-3r:01"}
    out = tmp_path / "run"
    with k3s_server(config, record, out):
        pass
    manifests = list(yaml.safe_load_all((out / "k3s" / "manifests.yaml").read_text()))
    deployment = next(r for r in manifests if r["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 3
    pdb = next(r for r in manifests if r["kind"] == "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 2
    summary = json.loads((out / "k3s.json").read_text())
    assert (summary["replicas"], summary["pdb_min_available"]) == (3, 2)


def _rendered_deployment():
    resources = kustomize.render(OVERLAYS[0])
    return resources, next(r for r in resources if r["kind"] == "Deployment")


def test_a_planted_typo_fails_validation():
    resources, deployment = _rendered_deployment()
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["resurces"] = container.pop("resources")
    errors = manifests.validation_errors(resources)
    assert len(errors) == 1 and "resurces" in errors[0] and errors[0].startswith("Deployment/")


def test_a_wrong_type_fails_validation():
    resources, deployment = _rendered_deployment()
    deployment["spec"]["replicas"] = "two"
    errors = manifests.validation_errors(resources)
    assert len(errors) == 1 and "replicas" in errors[0] and "'two'" in errors[0]


def test_an_unknown_kind_fails_validation():
    errors = manifests.validation_errors(
        [{"apiVersion": "v1", "kind": "Deployment", "metadata": {}}]
    )
    assert errors


def test_renderer_refuses_what_it_does_not_implement(tmp_path):
    shutil.copytree(manifests.BASE_DIR, tmp_path / "base")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": ["../base"], "commonLabels": {"a": "b"}})
    )
    with pytest.raises(kustomize.KustomizeError, match="unsupported field.*commonLabels"):
        kustomize.render(overlay)
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": ["../base"],
                "patches": [
                    {
                        "target": {"kind": "Deployment", "name": "sentiment"},
                        "patch": "- {op: replace, path: /spec/nothing/here, value: 1}",
                    }
                ],
            }
        )
    )
    with pytest.raises(kustomize.KustomizeError, match="does not exist"):
        kustomize.render(overlay)


def test_json_patch_operations():
    document = {"a": {"b": [1, 2]}, "c": 1}
    kustomize.apply_json_patch_operation(document, {"op": "add", "path": "/a/b/-", "value": 3})
    kustomize.apply_json_patch_operation(document, {"op": "replace", "path": "/a/b/0", "value": 0})
    kustomize.apply_json_patch_operation(document, {"op": "remove", "path": "/c"})
    kustomize.apply_json_patch_operation(document, {"op": "add", "path": "/x~1y", "value": 1})
    assert document == {"a": {"b": [0, 2, 3]}, "x/y": 1}


def test_more_than_one_worker_per_pod_is_refused():
    with pytest.raises(commands.K3sStepError, match="step 'render'.*workers: 2"):
        driver.check_one_worker({"variant": "x", "settings": {"workers": 2}})


# ------------------------------------------------------------------------ driver with fakes


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    """Fake tools first on PATH; returns (log path, spec writer)."""
    log_path = tmp_path / "fake-calls.jsonl"
    spec_path = tmp_path / "fake-spec.json"
    for name, value in install_fakes(tmp_path / "bin", log_path, spec_path).items():
        monkeypatch.setenv(name, value)

    def spec(**values):
        write_spec(spec_path, values)

    return log_path, spec


def _record(tmp_path, workers=1) -> dict:
    return {
        "variant": "baseline",
        "tag": TAG,
        "bentoml_home": str(tmp_path / "bentoml_home"),
        "settings": {"workers": workers},
    }


def _steps(log_path) -> list[str]:
    """The recorded calls, shortened to `tool subcommand...` (without the namespace flag)."""
    shown = []
    for call in recorded(log_path):
        words = [w for w in call if w not in ("-n", "servebench") and not w.startswith("/")]
        shown.append(" ".join(words[:4]))
    return shown


K3S_CONFIG = {"k3s_command": "k3s", "monitor_interval_s": 1}


def test_driver_runs_every_step_in_order_and_collects(tmp_path, fakes):
    log_path, spec = fakes
    spec(restarts=2, namespace_exists=False)
    config = _config(**K3S_CONFIG)
    out = tmp_path / "run"
    with k3s_server(config, _record(tmp_path), out) as server:
        assert server.url.startswith("http://127.0.0.1:")
        status, _ = http_get(server.url + "/readyz")
        assert status == 200
        with driver.k3s_monitor(server, out) as sampler:
            import time

            time.sleep(1.3)
        assert sampler.samples >= 2 and sampler.scrape_failures == 0
        calls_while_up = len(recorded(log_path))
    calls = recorded(log_path)
    steps = _steps(log_path)
    expected_order = [
        "docker image inspect",
        "image build --bento-json --results-dir",
        "k3s ctr images ls",
        "docker save -o",
        "k3s ctr images import",
        "kubectl get namespace",
        "kubectl create namespace",
        "kubectl apply -k",
        "kubectl rollout status deployment/sentiment",
        "kubectl port-forward service/sentiment",
    ]
    positions = [next(i for i, s in enumerate(steps) if s.startswith(e)) for e in expected_order]
    assert positions == sorted(positions), steps
    # The image is servebench's own offline build of the Bento (the docker target's image).
    build = next(call for call in calls if call[:3] == ["servebench", "image", "build"])
    assert build[build.index("--repository") + 1] == "servebench"
    bento_json = Path(build[build.index("--bento-json") + 1])
    assert json.loads(bento_json.read_text())["tag"] == TAG
    assert not any(call[:2] == ["bentoml", "containerize"] for call in calls)
    assert any(s.startswith("kubectl top pod") for s in steps)
    # After the block: collect, then teardown, nothing else.
    after = steps[calls_while_up:]
    assert after[-1].startswith("kubectl delete -k")
    assert any(s.startswith("kubectl get pods") for s in after)
    assert any(s.startswith("kubectl get events") for s in after)
    assert any(s.startswith("kubectl logs") for s in after)
    apply_dir = Path(next(call for call in calls if "apply" in call)[-1])
    assert apply_dir == out / "k3s" / "overlay"
    assert "rollout" in next(call for call in calls if "rollout" in call)
    # Files of the run folder.
    with (out / "k3s_pods.csv").open() as handle:
        pods = list(csv.DictReader(handle))
    assert pods[0]["restarts"] == "2" and pods[0]["last_termination_reason"] == "OOMKilled"
    assert len(json.loads((out / "k3s_events.json").read_text())) == 2
    assert "service ready" in (out / "server.log").read_text()
    summary = json.loads((out / "k3s.json").read_text())
    assert summary["restarts"] == 2 and summary["image"] == IMAGE and summary["rollout_s"] >= 0
    deploy_log = (out / "deploy.log").read_text()
    for step in ("# containerize", "# image-import", "# apply", "# rollout", "# teardown"):
        assert step in deploy_log
    assert "successfully rolled out" in deploy_log
    with (out / "resources.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and rows[-1]["n_processes"] == "1" and float(rows[-1]["cpu_percent"]) == 25.0
    assert int(rows[-1]["rss_bytes"]) == 1200 * 2**20
    assert "bentoml_requests_total" in (out / "server_metrics.csv").read_text()
    # The port-forward was stopped.
    assert not any(
        "port-forward" in " ".join(p.cmdline()) for p in __import__("psutil").Process().children()
    )


def test_image_already_built_and_imported_is_reused(tmp_path, fakes):
    log_path, spec = fakes
    spec(image_present=True, image_label=TAG, cluster_images=[f"docker.io/{IMAGE}"])
    with k3s_server(_config(**K3S_CONFIG), _record(tmp_path), tmp_path / "run"):
        pass
    steps = _steps(log_path)
    assert not any("build" in s or "import" in s or " save" in s for s in steps)


def test_an_image_of_the_tag_built_otherwise_is_built_again(tmp_path, fakes):
    # e.g. an older `bentoml containerize` image: it cannot start under the pod's read-only
    # root filesystem (docs/containers.md), so the tag gets servebench's image.
    log_path, spec = fakes
    spec(image_present=True, image_label="", cluster_images=[f"docker.io/{IMAGE}"])
    with k3s_server(_config(**K3S_CONFIG), _record(tmp_path), tmp_path / "run"):
        pass
    assert any(call[:3] == ["servebench", "image", "build"] for call in recorded(log_path))


@pytest.mark.parametrize("backend", ["podman", "buildah", "nerdctl"])
def test_only_docker_builds_the_image(backend):
    problems = config_errors(_config(containerize_backend=backend))
    assert any("containerize_backend" in problem for problem in problems), problems


def test_push_to_a_registry(tmp_path, fakes):
    log_path, _ = fakes
    config = _config(image_transfer="push", image_registry="registry.local:5000", **K3S_CONFIG)
    with k3s_server(config, _record(tmp_path), tmp_path / "run"):
        pass
    calls = recorded(log_path)
    assert ["docker", "push", f"registry.local:5000/{IMAGE}"] in calls
    assert not any(call[0] == "k3s" for call in calls)
    with pytest.raises(commands.K3sStepError, match="step 'image-push'.*image_registry"):
        with k3s_server(
            _config(image_transfer="push", **K3S_CONFIG), _record(tmp_path), tmp_path / "r2"
        ):
            pass


def test_sudo_prefix_of_the_k3s_command(tmp_path, fakes):
    log_path, _ = fakes
    with k3s_server(_config(monitor_interval_s=1), _record(tmp_path), tmp_path / "run"):
        pass
    calls = recorded(log_path)
    assert ["sudo", "-n", "k3s", "ctr", "images", "ls", "-q"] in calls
    assert any(call[:4] == ["sudo", "-n", "k3s", "ctr"] and "import" in call for call in calls)


def test_a_failed_rollout_names_the_step_and_still_collects_and_tears_down(tmp_path, fakes):
    log_path, spec = fakes
    spec(
        rules=[
            {
                "match": "rollout status",
                "rc": 1,
                "stderr": 'error: deployment "sentiment" exceeded its progress deadline\n',
            }
        ]
    )
    out = tmp_path / "run"
    with pytest.raises(commands.K3sStepError) as error:
        with k3s_server(_config(**K3S_CONFIG), _record(tmp_path), out):
            pytest.fail("the block must not run")
    assert error.value.step == "rollout"
    assert "exceeded its progress deadline" in str(error.value)
    steps = _steps(log_path)
    assert not any("port-forward" in s for s in steps)
    assert any(s.startswith("kubectl get events") for s in steps)
    assert steps[-1].startswith("kubectl delete -k")
    assert (out / "k3s_events.json").is_file()
    assert "exceeded its progress deadline" in (out / "deploy.log").read_text()


def test_a_failed_containerize_stops_before_anything_is_applied(tmp_path, fakes):
    log_path, spec = fakes
    spec(
        rules=[{"match": "image build", "rc": 2, "stderr": "Cannot connect to the Docker daemon\n"}]
    )
    with pytest.raises(commands.K3sStepError, match="(?s)step 'containerize'.*Docker daemon"):
        with k3s_server(_config(**K3S_CONFIG), _record(tmp_path), tmp_path / "run"):
            pass
    assert not any(call[0] == "kubectl" for call in recorded(log_path))


def test_a_failed_import_and_a_failed_apply(tmp_path, fakes):
    log_path, spec = fakes
    spec(rules=[{"match": "images import", "rc": 1, "stderr": "ctr: permission denied\n"}])
    with pytest.raises(commands.K3sStepError, match="(?s)step 'image-import'.*permission denied"):
        with k3s_server(_config(**K3S_CONFIG), _record(tmp_path), tmp_path / "r1"):
            pass
    assert not list((tmp_path / "r1" / "k3s").glob("*.tar"))  # the image tar is removed
    spec(rules=[{"match": "apply -k", "rc": 1, "stderr": "error: no objects passed to apply\n"}])
    with pytest.raises(commands.K3sStepError, match="(?s)step 'apply'.*no objects"):
        with k3s_server(_config(**K3S_CONFIG), _record(tmp_path), tmp_path / "r2"):
            pass
    assert _steps(log_path)[-1].startswith("kubectl delete -k")


def test_a_port_forward_that_dies_is_an_error(tmp_path, fakes):
    log_path, spec = fakes
    spec(rules=[{"match": "port-forward", "rc": 1, "stderr": "error: unable to forward\n"}])
    with pytest.raises(commands.K3sStepError, match="step 'port-forward'.*exited with code 1"):
        with k3s_server(_config(**K3S_CONFIG), _record(tmp_path), tmp_path / "run"):
            pass
    assert _steps(log_path)[-1].startswith("kubectl delete -k")
    assert "unable to forward" in (tmp_path / "run" / "deploy.log").read_text()


def test_a_port_forward_that_ends_with_its_pod_is_started_again_on_the_same_port(tmp_path, fakes):
    log_path, spec = fakes
    spec(pod_restart_s=1.5)  # the new pod runs 1.5 s after the old one is deleted (retry: 1 s)
    out = tmp_path / "run"
    with k3s_server(_config(**K3S_CONFIG), _record(tmp_path), out) as server:
        first = server.port_forward.process
        driver.inject_fault(server, "delete-pod")
        first.wait(timeout=5)  # kubectl's tunnel ends with its pod
        assert http_get(server.url + "/readyz", timeout_s=1.0)[0] != 200
        driver.wait_http_ready(server.url, 10, "test")  # the same URL answers again
        events = list(server.port_forward.events)
        assert server.port_forward.process is not first
    # At least one start failed while the new pod was not running yet.
    assert len(events) >= 2 and events[0]["exit_code"] == 1, events
    forwards = [call for call in recorded(log_path) if "port-forward" in call]
    assert len(forwards) == len(events) + 1
    assert len({call[-3] for call in forwards}) == 1  # PORT:3000, always the same port
    summary = json.loads((out / "k3s.json").read_text())
    assert len(summary["port_forward_restarts"]) == len(events)
    deploy_log = (out / "deploy.log").read_text()
    assert "lost connection to pod" in deploy_log and "pod is not running" in deploy_log
    # Stopped with the deployment: no kubectl left behind.
    assert not any(
        "port-forward" in " ".join(p.cmdline()) for p in __import__("psutil").Process().children()
    )


def test_a_missing_kubectl_is_named(tmp_path, fakes):
    _, _ = fakes
    config = _config(kubectl="kubectl-that-does-not-exist", **K3S_CONFIG)
    with pytest.raises(commands.K3sStepError, match="step 'namespace'.*command not found"):
        with k3s_server(config, _record(tmp_path), tmp_path / "run"):
            pass


def test_a_command_that_hangs_times_out(tmp_path, fakes):
    _, spec = fakes
    spec(rules=[{"match": "rollout status", "sleep_s": 5, "stderr": "waiting\n"}])
    runner = commands.CommandRunner(tmp_path / "deploy.log")
    with pytest.raises(commands.K3sStepError, match="step 'rollout'.*within 0 s"):
        runner.run("rollout", ["kubectl", "rollout", "status", "x"], timeout_s=0.3)
    assert "timed out" in (tmp_path / "deploy.log").read_text()


def test_node_port_access_uses_the_node_url(tmp_path, fakes):
    log_path, _ = fakes

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        config = _config(access="node-port", node_port=port, **K3S_CONFIG)
        with k3s_server(config, _record(tmp_path), tmp_path / "run") as deployed:
            assert deployed.url == f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
    assert not any("port-forward" in s for s in _steps(log_path))
    assert (tmp_path / "run" / "k3s" / "overlay" / "service-nodeport.yaml").is_file()


def test_parse_top():
    assert driver.parse_top("a 250m 1200Mi\nb 1 2Gi\nbad\n") == [
        ("a", 250.0, 1200 * 2**20),
        ("b", 1000.0, 2 * 2**30),
    ]


# ----------------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("delete-pod", ["kubectl", "-n", "servebench", "delete", "pod", "sentiment-7d9f-abcde"]),
        ("rollout-restart", ["kubectl", "-n", "servebench", "rollout", "restart"]),
        (
            "kill-containerd",
            ["pkill", "-KILL", "-f", "^containerd .*-a /run/k3s/containerd/containerd[.]sock( |$)"],
        ),
        ("restart-k3s", ["systemctl", "restart", "k3s"]),
    ],
)
def test_k3s_faults_run_their_commands(tmp_path, fakes, fault, expected):
    log_path, _ = fakes
    with k3s_server(_config(**K3S_CONFIG), _record(tmp_path), tmp_path / "run") as server:
        before = len(recorded(log_path))
        facts = driver.inject_fault(server, fault)
        during = recorded(log_path)[before:]
    assert facts["fault"] == fault and facts["done_at_s"] >= facts["injected_at_s"]
    assert any(call[: len(expected)] == expected for call in during), during
    if fault in ("kill-containerd", "restart-k3s"):
        assert during[0][:2] == ["sudo", "-n"]
    with pytest.raises(ValueError, match="unknown K3s fault"):
        driver.fault_commands(server, "kill-worker")


def test_the_kill_containerd_command_aims_at_k3s_containerd_only():
    import shlex

    command = shlex.split(load_config()["deploy"]["k3s"]["faults"]["kill_containerd"])
    assert command[:5] == ["sudo", "-n", "pkill", "-KILL", "-f"]
    pattern = re.compile(command[5])  # pkill -f: an extended regex over the whole command line
    k3s = (
        "containerd -c /var/lib/rancher/k3s/agent/etc/containerd/config.toml -a "
        "/run/k3s/containerd/containerd.sock --state /run/k3s/containerd --root "
        "/var/lib/rancher/k3s/agent/containerd"
    )
    assert pattern.search(k3s)
    others = [
        "/usr/bin/containerd",  # Docker's (systemd unit)
        "containerd --config /var/run/docker/containerd/containerd.toml",  # dockerd's own
        "/var/lib/rancher/k3s/data/abc/bin/containerd-shim-runc-v2 -namespace k8s.io -id x "
        "-address /run/k3s/containerd/containerd.sock",  # a pod's shim
        "containerd -a /run/k3s/containerd/containerd.sock.ttrpc",
        shlex.join(command),  # the fault's own command line (sudo) is never a match
    ]
    assert [line for line in others if pattern.search(line)] == []


def test_every_k3s_fault_kind_has_an_injector_and_none_runs_on_another_target():
    from servebench import faults

    for name in faults_of("k3s"):
        assert callable(faults.injector(name, "k3s"))
        with pytest.raises(faults.FaultError, match="applies to the k3s target only"):
            faults.injector(name, "local")


def test_the_registered_injector_acts_on_the_runs_k3s_server(tmp_path, fakes):
    from servebench import faults

    log_path, _ = fakes
    inject = faults.injector("rollout-restart", "k3s")
    with k3s_server(_config(**K3S_CONFIG), _record(tmp_path), tmp_path / "run") as server:
        context = faults.FaultContext(
            target="k3s", params={}, deployment=driver.K3sDeployment(server)
        )
        facts = inject(context)
        assert facts["end_wall_s"] > 0 and facts["commands"]
    restarts = [call for call in recorded(log_path) if "restart" in call]
    assert len(restarts) == 1


# --------------------------------------------------------------------- the workflow's driver


def test_run_scenario_with_target_k3s_deploys_through_the_k3s_driver(tmp_path, fakes, monkeypatch):
    log_path, _ = fakes
    config = copy.deepcopy(_config(**K3S_CONFIG))
    config["deploy"]["target"] = "k3s"
    record_path = tmp_path / "baseline.json"
    record_path.write_text(json.dumps(_record(tmp_path)))
    seen = {}

    def fake_loadtest(measured_cpus, foreign_cpu_max_percent, min_requests, **kwargs):
        seen["host"] = kwargs["host"]
        seen["measured_cpus"] = measured_cpus
        return RunSummary(valid=True, throughput_rps=1.0)

    monkeypatch.setattr(scenario_job, "measured_loadtest", fake_loadtest)
    out = tmp_path / "runs" / "k3s" / "baseline" / "steady" / "rep0"
    spec = RunSpec("k3s", "baseline", "steady", 0)
    capacity = tmp_path / "capacity.json"
    capacity.write_text(json.dumps({"saturation_rps": 10.0}))
    summary = scenario_job.run_scenario(
        config, spec, record_path, tmp_path / "payloads.csv", out, capacity
    )
    assert summary.valid is True, summary
    assert seen["host"].startswith("http://127.0.0.1:")
    # The pods are not on this machine's server cores: only the generator's are measured.
    assert seen["measured_cpus"] == tuple(config["cpus"]["loadgen"])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["target"] == "k3s" and meta["valid"] is True
    assert (out / "deploy.log").is_file() and (out / "resources.csv").is_file()
    assert any("apply" in call for call in recorded(log_path))


# ------------------------------------------------------------------------------ real cluster


def _cluster_reason() -> str | None:
    """None when KUBECONFIG points at a reachable cluster, else why not."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        return "KUBECONFIG is not set (no cluster to test against)"
    if not shutil.which("kubectl"):
        return "kubectl is not installed"
    try:
        result = subprocess.run(
            ["kubectl", "cluster-info"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return f"the cluster of KUBECONFIG={kubeconfig} did not answer within 20 s"
    if result.returncode != 0:
        return f"the cluster of KUBECONFIG={kubeconfig} is not reachable: {result.stderr.strip()}"
    return None


@pytest.mark.cluster
@pytest.mark.parametrize("overlay", OVERLAYS, ids=[path.name for path in OVERLAYS])
def test_overlays_pass_a_server_side_dry_run_on_the_cluster(overlay):
    reason = _cluster_reason()
    if reason:
        pytest.skip(reason)
    kustomized = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True
    )

    # kubectl's own kustomize renders what the offline renderer renders.
    def by_name(resources):
        return {(r["kind"], r["metadata"]["name"]): r for r in resources}

    assert by_name(yaml.safe_load_all(kustomized.stdout)) == by_name(kustomize.render(overlay))
    namespace = subprocess.run(["kubectl", "get", "namespace", "servebench"], capture_output=True)
    if namespace.returncode != 0:
        subprocess.run(["kubectl", "create", "namespace", "servebench"], check=True)
    result = subprocess.run(
        ["kubectl", "apply", "-k", str(overlay), "--dry-run=server"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_the_reports_variant_table_shows_replicas_and_pdb_on_k3s():
    from servebench.report.html import variants_table

    config = _two_replica_variants()
    assert "replicas" not in variants_table(config).columns  # local target: no pods
    config["deploy"]["target"] = "k3s"
    table = variants_table(config)
    replicas = table.columns.index("replicas")
    pdb = table.columns.index("PDB")
    assert [(row[replicas][0], row[pdb][0]) for row in table.rows] == [
        ("1", "maxUnavailable 1"),
        ("3", "minAvailable 2"),
    ]


# ------------------------------------------------------------------- processes of a driver

K3S_DRIVER = r"""
import json, sys, time
from pathlib import Path
from servebench.config import deep_merge, load_config
from servebench.deploy import deployed
from servebench.settings import deploy_target

config = deep_merge(load_config(), {"deploy": {"target": "k3s", "k3s": json.loads(sys.argv[3])}})
record = json.loads(sys.argv[1])
with deployed(deploy_target(config, record["variant"]), record, Path(sys.argv[2])) as deployment:
    print("ready", deployment.server.port_forward.process.pid, flush=True)
    time.sleep(120)
"""


def _start_driver(tmp_path, out):
    import sys

    return subprocess.Popen(
        [sys.executable, "-c", K3S_DRIVER, json.dumps(_record(tmp_path)), str(out)]
        + [json.dumps(K3S_CONFIG)],
        stdout=subprocess.PIPE,
        text=True,
    )


def _wait_for_call(log_path, words, timeout_s=30.0):
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(all(word in call for word in words) for call in recorded(log_path)):
            return
        time.sleep(0.05)
    raise AssertionError(f"no call with {words}: {recorded(log_path)}")


def test_a_driver_killed_by_sigkill_leaves_no_port_forward(tmp_path, fakes):
    import psutil

    log_path, _ = fakes
    process = _start_driver(tmp_path, tmp_path / "run")
    forward = None
    try:
        line = process.stdout.readline().split()
        assert line and line[0] == "ready", line
        forward = psutil.Process(int(line[1]))
        assert "port-forward" in " ".join(forward.cmdline())
        process.kill()  # no finally, no teardown: only the kernel can stop the port-forward
        process.wait(timeout=10)
        gone, _ = psutil.wait_procs([forward], timeout=10)
        assert gone, f"kubectl port-forward (pid {forward.pid}) outlived its driver"
    finally:
        process.kill()
        if forward is not None and forward.is_running():
            forward.kill()


def test_sigterm_during_the_rollout_tears_down_and_a_second_one_does_not_cut_it_short(
    tmp_path, fakes
):
    import signal

    log_path, spec = fakes
    spec(
        rules=[
            {"match": "rollout status", "sleep_s": 60},
            {"match": "delete -k", "sleep_s": 1.5, "stdout": "deleted\n"},
        ]
    )
    out = tmp_path / "run"
    process = _start_driver(tmp_path, out)
    try:
        _wait_for_call(log_path, ["rollout", "status"])
        process.send_signal(signal.SIGTERM)
        _wait_for_call(log_path, ["delete", "-k"])
        process.send_signal(signal.SIGTERM)  # while the teardown runs
        assert process.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        process.kill()
    summary = json.loads((out / "k3s.json").read_text())  # written at the end of the teardown
    assert [c["step"] for c in summary["commands"]][-1] == "teardown"
    assert "port_forward_restarts" not in summary  # it never started
