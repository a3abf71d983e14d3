"""Emulated cluster with one workload of each kind, for the actuator tests.

The fleet is the demo fleet plus a StatefulSet and a LeaderWorkerSet
variant on L4 GPUs. The emulator listens on an ephemeral loopback port and
faults are injected through its `/emulator/faults` route.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from fleetsim.emulator import Emulator
from wva_web.integrations.kube import Actuator

NS = "llm"
DEMO_FLEET = Path(__file__).resolve().parents[2] / "data" / "demo_fleet.json"
DEPLOYMENT = "llama-8b-l4"
STATEFUL_SET = "llama-8b-l4-sts"
LEADER_WORKER_SET = "llama-8b-l4-lws"
KIND_OF = {
    DEPLOYMENT: "Deployment",
    STATEFUL_SET: "StatefulSet",
    LEADER_WORKER_SET: "LeaderWorkerSet",
}
# Seconds the actuator waits for one API call; a fault delays past it.
TIMEOUT_S = 1.0


def write_fleet(path: Path) -> Path:
    """Write the demo fleet with a 3-replica StatefulSet and LeaderWorkerSet."""
    fleet = json.loads(DEMO_FLEET.read_text())
    common = {"accelerator": "L4", "replicas": 3, "min_replicas": 1}
    fleet["variants"] += [
        {"name": STATEFUL_SET, "kind": "StatefulSet", "max_replicas": 4, **common},
        {
            "name": LEADER_WORKER_SET,
            "kind": "LeaderWorkerSet",
            "group_size": 2,
            "gpus_per_replica": 2,
            "max_replicas": 4,
            **common,
        },
    ]
    fleet["accelerators"]["L4"]["gpus"] = 16
    path.write_text(json.dumps(fleet))
    return path


@contextmanager
def running_emulator(tmp_path: Path) -> Iterator[Emulator]:
    fleet = write_fleet(tmp_path / "fleet.json")
    with Emulator(
        fleet,
        tmp_path / "emulator",
        clock="manual",
        startup_delay_s=30.0,
        seed=4,
        trace=False,
    ) as emu:
        yield emu


def make_actuator(emu: Emulator, dry_run: bool = False) -> Actuator:
    """Build an actuator the way the console does: no urllib3 retries."""
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(
        config_file=str(emu.kubeconfig_path), client_configuration=configuration
    )
    configuration.retries = 0
    client = k8s.ApiClient(configuration)
    return Actuator(client, dry_run=dry_run, timeout_s=TIMEOUT_S)


def workload(name: str, kind: str | None = None) -> Any:
    """Return the fields of a catalogue variant that name a workload."""
    return SimpleNamespace(
        name=name,
        namespace=NS,
        kind=kind or KIND_OF.get(name, "Deployment"),
        workload_name=name,
    )


def inject_fault(
    emu: Emulator, status: int | None = None, delay_s: float = 0.0, count: int = 1
) -> None:
    """Make the next `count` Kubernetes API calls fail or wait."""
    body = json.dumps({"count": count, "status": status, "delay_s": delay_s})
    request = urllib.request.Request(
        emu.base_url + "/emulator/faults",
        data=body.encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()


def list_events(emu: Emulator) -> list[dict[str, Any]]:
    """List the Events stored in the namespace, as the API returns them."""
    url = f"{emu.base_url}/api/v1/namespaces/{NS}/events"
    with urllib.request.urlopen(url, timeout=5) as response:
        return list(json.loads(response.read())["items"])


def before_first_call(api: Any, method: str, hook: Callable[[], None]) -> None:
    """Run `hook` once, just before the first call of `api.method`."""
    original = getattr(api, method)
    pending = [hook]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        while pending:
            pending.pop()()
        return original(*args, **kwargs)

    setattr(api, method, wrapped)
