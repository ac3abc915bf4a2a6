"""Shared by tests/test_service*.py and tests/test_deploy_local*.py: a tiny model with its three
runtimes and the baseline and optimized Bentos, built once per test session."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from servebench.config import load_config

REPO_ROOT = Path(__file__).resolve().parents[1]
WORDS = (
    "good bad great awful movie food service happy sad love hate the a is was very not "
    "really okay fine terrible wonderful slow fast friendly rude price value"
).split()


@dataclass
class Testbed:
    config: dict[str, Any]
    model_dir: Path  # results/model/<model>/ equivalent: one folder per runtime
    bentoml_home: Path
    records: dict[str, dict[str, Any]]  # variant -> results/bentos/<variant>.json content
    record_paths: dict[str, Path]

    def runtime_dir(self, variant: str) -> Path:
        return self.model_dir / self.config["variants"][variant]["runtime"]


_CACHE: dict[str, Testbed] = {}
TESTBED_TOKEN_LIMITS = {"max_request_tokens": 1000, "max_pass_tokens": 300}


def sample_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 40))) for _ in range(n)]


def tiny_testbed(
    tmp_path_factory: Any, variants: tuple[str, ...] = ("baseline", "optimized")
) -> Testbed:
    """Build (once per session) the tiny model's runtimes and the Bentos of `variants`."""
    if "testbed" in _CACHE:
        return _CACHE["testbed"]
    from servebench.bento import build_bento
    from servebench.model import build, resolve

    root = tmp_path_factory.mktemp("bento-testbed")
    config = load_config(REPO_ROOT / ".test" / "config.yaml")
    # Configured token limits, not the derived ones (16 and 4 texts at the tiny model's
    # max_length of 128), so that the served tests check that the keys reach the service.
    config["service"].update(TESTBED_TOKEN_LIMITS)
    corpus = root / "corpus.csv"
    with corpus.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        for text in sample_texts(300, seed=1):
            writer.writerow([text])
    resolution = resolve.resolve_model(config["model"], check_hub=lambda: (False, "tests: offline"))
    model_dir = root / "model" / resolution.name
    build.prepare_pytorch(
        config["model"],
        model_dir / "pytorch",
        corpus_path=corpus,
        resolution=resolution,
        measure_load=False,
    )
    build.export_onnx(model_dir / "pytorch", model_dir / "onnx", measure_load=False)
    build.quantize_onnx(model_dir / "onnx", model_dir / "onnx-int8", measure_load=False)
    home = root / "bentoml_home"
    records, paths = {}, {}
    for variant in variants:
        runtime = config["variants"][variant]["runtime"]
        paths[variant] = root / "bentos" / f"{variant}.json"
        records[variant] = build_bento(
            config,
            variant,
            model_dir / runtime,
            paths[variant],
            bentoml_home=home,
            log=root / "logs" / f"bento-{variant}.log",
        )
    _CACHE["testbed"] = Testbed(config, model_dir, home, records, paths)
    return _CACHE["testbed"]


def post_json(url: str, payload: Any, timeout_s: float = 30.0) -> tuple[int, Any]:
    """(status, decoded JSON body) of a POST."""
    import urllib.error
    import urllib.request

    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw)
        except ValueError:
            return error.code, raw.decode("utf-8", errors="replace")


def wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    """The pids still alive (zombies count as gone) after waiting up to `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


# A concurrent client in a process of its own, pinned away from the server's core: it sends
# `n` requests of one text each to /classify_batch from `concurrency` threads.
CONCURRENT_CLIENT = r"""
import json, os, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
url, n, concurrency, cpus = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
os.sched_setaffinity(0, [int(c) for c in cpus.split(",")])
def one(i):
    body = json.dumps({"texts": [f"request {i} with some words to classify"]}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
with ThreadPoolExecutor(concurrency) as pool:
    statuses = list(pool.map(one, range(n)))
print(json.dumps({str(s): statuses.count(s) for s in set(statuses)}))
"""


def run_concurrent_client(url: str, n: int, concurrency: int, cpus: list[int]) -> dict[str, int]:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            CONCURRENT_CLIENT,
            url,
            str(n),
            str(concurrency),
            ",".join(map(str, cpus)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(result.stdout)


def client_cpus(server_cpus: list[int]) -> list[int]:
    """Cores for a test client: those the server does not use (all of them on one core)."""
    import os

    available = sorted(os.sched_getaffinity(0))
    others = [cpu for cpu in available if cpu not in server_cpus]
    return others or available
