"""GPU inventory from the node labels and resources of each vendor's plugins."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client import (
    V1Container,
    V1Node,
    V1NodeStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodSpec,
    V1PodStatus,
    V1ResourceRequirements,
)

from wva_web.integrations.kube import Actuator, gpu_product


def node(name: str, labels: dict[str, str], allocatable: dict[str, str]) -> V1Node:
    return V1Node(
        metadata=V1ObjectMeta(name=name, labels=labels),
        status=V1NodeStatus(allocatable=allocatable),
    )


def pod(node_name: str, requests: dict[str, str]) -> V1Pod:
    container = V1Container(
        name="vllm", resources=V1ResourceRequirements(requests=requests)
    )
    return V1Pod(
        metadata=V1ObjectMeta(name=f"pod-{node_name}"),
        spec=V1PodSpec(containers=[container], node_name=node_name),
        status=V1PodStatus(phase="Running"),
    )


class Core:
    """CoreV1Api with fixed nodes and pods."""

    def __init__(self, nodes: list[V1Node], pods: list[V1Pod]) -> None:
        self.nodes = nodes
        self.pods = pods

    def list_node(self, **_: Any) -> Any:
        return SimpleNamespace(items=self.nodes)

    def list_pod_for_all_namespaces(self, **_: Any) -> Any:
        return SimpleNamespace(items=self.pods)


@pytest.mark.parametrize(
    ("labels", "product"),
    [
        ({"nvidia.com/gpu.product": "NVIDIA-L4"}, "NVIDIA-L4"),
        (
            {"amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM"},
            "AMD_Instinct_MI300X_OAM",
        ),
        (
            {"beta.amd.com/gpu.product-name": "AMD_Instinct_MI250X"},
            "AMD_Instinct_MI250X",
        ),
        ({"gpu.intel.com/product": "Max_1550"}, "Max_1550"),
        ({"gpu.intel.com/device-id.0380-0BD5.present": "true"}, "0380-0bd5"),
        ({"gpu.intel.com/device-id.0300-56c0.count": "1"}, ""),
        ({"amd.com/gpu.family": "AI"}, ""),
    ],
)
def test_gpu_product_from_labels(labels, product):
    assert gpu_product(labels) == product


def test_product_label_beats_device_id():
    # Given an Intel data-center GPU node with both label families.
    labels = {
        "gpu.intel.com/device-id.0380-0bd5.present": "true",
        "gpu.intel.com/product": "Max_1550",
    }
    # Then the product label names it.
    assert gpu_product(labels) == "Max_1550"


def test_inventory_counts_amd_and_intel():
    # Given an AMD node, an Intel node on each kernel driver, and their pods.
    core = Core(
        nodes=[
            node("amd", {"amd.com/gpu.product-name": "MI300X"}, {"amd.com/gpu": "8"}),
            node(
                "xe",
                {"gpu.intel.com/product": "Max_1550"},
                {"gpu.intel.com/xe": "2"},
            ),
            node(
                "i915",
                {"gpu.intel.com/product": "Max_1550"},
                {"gpu.intel.com/i915": "2"},
            ),
        ],
        pods=[
            pod("amd", {"amd.com/gpu": "3"}),
            pod("xe", {"gpu.intel.com/xe": "1"}),
            pod("i915", {"gpu.intel.com/i915": "2"}),
        ],
    )
    actuator = Actuator(apps=object(), core=core, autoscaling=object(), custom=object())
    # When the inventory is read.
    inventory = actuator.gpu_inventory()
    # Then each product counts its own vendor's resource.
    assert inventory["MI300X"].allocatable == 8
    assert inventory["MI300X"].requested == 3
    assert inventory["Max_1550"].allocatable == 4
    assert inventory["Max_1550"].requested == 3
    assert inventory["Max_1550"].free == 1
