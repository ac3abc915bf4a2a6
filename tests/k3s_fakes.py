"""Fake `kubectl`, `k3s`, `docker`, `podman`, `buildah`, `nerdctl`, `bentoml`, `servebench`
(its `image build`) and `sudo` for the K3s driver's tests.

`install_fakes(bin_dir, ...)` writes one small Python script under each name into `bin_dir`.
Each records its argv as a JSON line in $FAKE_K8S_LOG and answers like the real tool would
(the answers a test wants to change come from the rules in $FAKE_K8S_SPEC: the first rule
whose `match` is a substring of the command line sets exit code, stdout, stderr, a delay).
`kubectl port-forward LOCAL:REMOTE` really listens on 127.0.0.1:LOCAL: it answers /readyz,
/livez and /metrics itself, as the port-forwarded service would, or, with `upstream`
("http://127.0.0.1:PORT") in the spec, forwards every TCP connection to that server (the pod).

The pods have a state (a JSON file next to the log): `kubectl delete pod` and `kubectl rollout
restart` replace the pod, which ends every port-forward to the old one ("lost connection to
pod", exit 1, as kubectl does); after `delete pod` the new pod runs only `pod_restart_s`
(spec) later, and a port-forward started before that fails ("pod is not running").
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

TOOLS = (
    "kubectl",
    "k3s",
    "docker",
    "podman",
    "buildah",
    "nerdctl",
    "bentoml",
    "servebench",
    "sudo",
)

FAKE_SCRIPT = r"""
import json, os, sys, time

tool = os.path.basename(sys.argv[0])
args = sys.argv[1:]
with open(os.environ["FAKE_K8S_LOG"], "a", encoding="utf-8") as handle:
    handle.write(json.dumps([tool, *args]) + "\n")
line = " ".join([tool, *args])
spec = json.load(open(os.environ["FAKE_K8S_SPEC"], encoding="utf-8"))

for rule in spec.get("rules", []):
    if rule["match"] in line:
        time.sleep(rule.get("sleep_s", 0))
        sys.stdout.write(rule.get("stdout", ""))
        sys.stderr.write(rule.get("stderr", ""))
        sys.exit(rule.get("rc", 0))

if tool == "sudo":  # sudo -n CMD ...: run CMD (also a fake) in this process's place
    rest = [a for a in args if a != "-n"]
    os.execvp(rest[0], rest)

def out(text):
    sys.stdout.write(text)
    sys.exit(0)

def fail(text, rc=1):
    sys.stderr.write(text)
    sys.exit(rc)

STATE = os.environ["FAKE_K8S_LOG"] + ".pods.json"

def pods():
    try:
        return json.load(open(STATE, encoding="utf-8"))
    except (OSError, ValueError):
        return {"generation": 0, "running_at": 0}

def replace_pod(down_s):
    state = pods()
    state = {"generation": state["generation"] + 1, "running_at": time.time() + down_s}
    with open(STATE + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(state, handle)
    os.replace(STATE + ".tmp", STATE)

def end_with_the_pod(generation):
    import threading
    def watch():
        while pods()["generation"] == generation:
            time.sleep(0.05)
        sys.stderr.write("E0101 portforward.go:413] lost connection to pod\n")
        sys.stderr.flush()
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()

def forward_tcp(local, upstream):
    import socket, threading
    host, port = upstream.split("//")[-1].rstrip("/").split(":")
    listener = socket.create_server(("127.0.0.1", local))
    print(f"Forwarding from 127.0.0.1:{local} -> 3000", flush=True)
    def pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
    while True:
        client, _ = listener.accept()
        try:
            pod = socket.create_connection((host, int(port)))
        except OSError:
            client.close()
            continue
        for source, sink in ((client, pod), (pod, client)):
            threading.Thread(target=pump, args=(source, sink), daemon=True).start()

if tool == "kubectl":
    if "port-forward" in args:
        from http.server import BaseHTTPRequestHandler, HTTPServer
        local = int([a for a in args if ":" in a][0].split(":")[0])
        state = pods()
        if time.time() < state["running_at"]:
            fail("error: unable to forward port because pod is not running. Current status=Pending\n")
        end_with_the_pod(state["generation"])
        if spec.get("upstream"):
            forward_tcp(local, spec["upstream"])
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"ok"
                if self.path == "/metrics":
                    body = b"# TYPE bentoml_requests_total counter\nbentoml_requests_total 3\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            def log_message(self, *a):
                pass
        print(f"Forwarding from 127.0.0.1:{local} -> 3000", flush=True)
        HTTPServer(("127.0.0.1", local), Handler).serve_forever()
    if "apply" in args and "-k" in args:
        directory = args[args.index("-k") + 1]
        if not os.path.isfile(os.path.join(directory, "kustomization.yaml")):
            fail(f"error: unable to find kustomization in {directory}\n")
        out("deployment.apps/sentiment created\nservice/sentiment created\n")
    if "delete" in args and "-k" in args:
        out('deployment.apps "sentiment" deleted\n')
    if "rollout" in args and "status" in args:
        out('deployment "sentiment" successfully rolled out\n')
    if "rollout" in args and "restart" in args:
        replace_pod(0)  # surge: the new pod is ready before the old one goes
        out("deployment.apps/sentiment restarted\n")
    if args[:2] == ["get", "namespace"]:
        out(f"namespace/{args[2]}\n") if spec.get("namespace_exists", True) else fail(
            f'Error from server (NotFound): namespaces "{args[2]}" not found\n'
        )
    if args[:2] == ["create", "namespace"]:
        out(f"namespace/{args[2]} created\n")
    if "get" in args and "pods" in args:
        if any(a.startswith("jsonpath=") for a in args):
            out("sentiment-7d9f-abcde")
        pods = {"items": [{
            "metadata": {"name": "sentiment-7d9f-abcde"},
            "spec": {"nodeName": "node-1"},
            "status": {"phase": "Running", "containerStatuses": [{
                "ready": True,
                "restartCount": spec.get("restarts", 0),
                "lastState": {"terminated": {"reason": "OOMKilled"}} if spec.get("restarts") else {},
            }]},
        }]}
        out(json.dumps(pods))
    if "get" in args and "events" in args:
        out(json.dumps({"items": [{"reason": "Pulled", "message": "image present"},
                                  {"reason": "Started", "message": "started"}]}))
    if "top" in args:
        out("sentiment-7d9f-abcde   250m   1200Mi\n")
    if "logs" in args:
        out("[pod/sentiment-7d9f-abcde/sentiment] bentoml: service ready\n")
    if "delete" in args and "pod" in args:
        replace_pod(spec.get("pod_restart_s", 0))
        out(f'pod "{args[args.index("pod") + 1]}" deleted\n')
    out("")

if tool in ("docker", "podman", "nerdctl", "buildah"):
    if "inspect" in args:
        if not spec.get("image_present"):
            fail("Error: No such image\n")
        # --format: the image's Bento label (image_label; "" for an image built otherwise)
        out(spec.get("image_label", "") + "\n" if "--format" in args else "[{}]\n")
    if "save" in args:
        with open(args[args.index("-o") + 1], "wb") as handle:
            handle.write(b"image tar")
        out("")
    if tool == "buildah" and args[0] == "push" and "docker-archive:" in " ".join(args):
        path = [a for a in args if a.startswith("docker-archive:")][0].split(":")[1]
        open(path, "wb").write(b"image tar")
        out("")
    if args[0] == "push":
        out("pushed\n")
    out("")

if tool == "k3s":
    if args[:3] == ["ctr", "images", "ls"]:
        out("\n".join(spec.get("cluster_images", [])) + "\n")
    if args[:3] == ["ctr", "images", "import"]:
        if not os.path.isfile(args[3]):
            fail(f"ctr: open {args[3]}: no such file or directory\n")
        out("unpacking docker.io/servebench/sentiment (sha256:0)...done\n")
    out("")

if tool == "servebench":
    if args[:2] == ["image", "build"]:
        out("results/images/baseline.json: servebench/sentiment-baseline (1 bytes, built in 1 s)\n")
    out("")

if tool == "bentoml":
    if args[:1] == ["containerize"]:
        out(f"Successfully built Bento container for {args[1]}\n")
    out("")

if tool == "systemctl" or tool == "pkill":
    out("")
"""


def install_fakes(bin_dir: Path, log_path: Path, spec_path: Path) -> dict[str, str]:
    """Write the fakes into bin_dir; return the environment variables that activate them."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in (*TOOLS, "systemctl", "pkill"):
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{FAKE_SCRIPT}", encoding="utf-8")
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    log_path.write_text("", encoding="utf-8")
    Path(f"{log_path}.pods.json").unlink(missing_ok=True)
    write_spec(spec_path, {})
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "FAKE_K8S_LOG": str(log_path),
        "FAKE_K8S_SPEC": str(spec_path),
    }


def write_spec(path: Path, spec: dict[str, Any]) -> None:
    path.write_text(json.dumps(spec), encoding="utf-8")


def recorded(log_path: Path) -> list[list[str]]:
    """Every recorded command line, in order."""
    return [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines()]
