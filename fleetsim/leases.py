"""coordination.k8s.io/v1 Leases of the emulated cluster.

The store keeps each Lease as the JSON the client sent, adds server-set
metadata, and rejects a write whose `metadata.resourceVersion` is not the
stored one with 409 Conflict, as the Kubernetes API server does. It judges
no expiry: clients compare `renewTime` and `leaseDurationSeconds` to their
own clocks.
"""

from __future__ import annotations

import copy
from typing import Any

from fleetsim.engine import Cluster
from fleetsim.kube import Clock, list_json, status_body

API_VERSION = "coordination.k8s.io/v1"
MERGE_PATCH_TYPES = (
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)

Reply = tuple[int, dict[str, Any]]


def _error(code: int, reason: str, message: str) -> Reply:
    return code, status_body(code, reason, message)


def _conflict(name: str) -> Reply:
    return _error(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on leases.coordination.k8s.io "{name}": '
        "the object has been modified; please apply your changes to the latest "
        "version and try again",
    )


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply a JSON merge patch (RFC 7386): null removes a key, objects merge."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_patch(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class LeaseStore:
    """Leases of the fleet's namespace, keyed by name."""

    def __init__(self, cluster: Cluster, clock: Clock) -> None:
        self.cluster = cluster
        self.clock = clock
        self.leases: dict[str, dict[str, Any]] = {}

    def _namespace_error(self, ns: str) -> Reply | None:
        if ns != self.cluster.fleet.namespace:
            return _error(404, "NotFound", f'namespaces "{ns}" not found')
        return None

    def _not_found(self, name: str) -> Reply:
        return _error(404, "NotFound", f'leases.coordination.k8s.io "{name}" not found')

    def _stored(self, ns: str, name: str, lease: dict[str, Any]) -> dict[str, Any]:
        """Return `lease` with server-set metadata and a new resourceVersion."""
        old = self.leases.get(name, {}).get("metadata", {})
        metadata = dict(lease.get("metadata") or {})
        metadata.update(
            name=name,
            namespace=ns,
            uid=old.get("uid") or self.cluster.new_uid(),
            creationTimestamp=old.get("creationTimestamp")
            or self.clock.stamp(self.cluster.now),
            resourceVersion=str(self.cluster.next_revision()),
        )
        stored = {
            "apiVersion": API_VERSION,
            "kind": "Lease",
            "metadata": metadata,
            "spec": dict(lease.get("spec") or {}),
        }
        self.leases[name] = stored
        return copy.deepcopy(stored)

    def _precondition_failed(self, name: str, body: dict[str, Any]) -> bool:
        expected = (body.get("metadata") or {}).get("resourceVersion")
        current = self.leases[name]["metadata"]["resourceVersion"]
        return expected is not None and str(expected) != current

    def list_leases(self, ns: str, **_: Any) -> Reply:
        error = self._namespace_error(ns)
        if error is not None:
            return error
        items = [copy.deepcopy(lease) for _, lease in sorted(self.leases.items())]
        return 200, list_json("LeaseList", API_VERSION, items, self.cluster.revision)

    def get_lease(self, ns: str, name: str, **_: Any) -> Reply:
        error = self._namespace_error(ns)
        if error is not None:
            return error
        if name not in self.leases:
            return self._not_found(name)
        return 200, copy.deepcopy(self.leases[name])

    def create_lease(self, ns: str, body: Any, **_: Any) -> Reply:
        error = self._namespace_error(ns)
        if error is not None:
            return error
        if not isinstance(body, dict):
            return _error(400, "BadRequest", "lease body must be a JSON object")
        name = str((body.get("metadata") or {}).get("name") or "")
        if not name:
            return _error(422, "Invalid", "metadata.name is required")
        if name in self.leases:
            message = f'leases.coordination.k8s.io "{name}" already exists'
            return _error(409, "AlreadyExists", message)
        return 201, self._stored(ns, name, body)

    def replace_lease(self, ns: str, name: str, body: Any, **_: Any) -> Reply:
        error = self._namespace_error(ns)
        if error is not None:
            return error
        if not isinstance(body, dict):
            return _error(400, "BadRequest", "lease body must be a JSON object")
        if name not in self.leases:
            return self._not_found(name)
        if self._precondition_failed(name, body):
            return _conflict(name)
        return 200, self._stored(ns, name, body)

    def patch_lease(
        self, ns: str, name: str, body: Any, content_type: str, **_: Any
    ) -> Reply:
        error = self._namespace_error(ns)
        if error is not None:
            return error
        if content_type not in MERGE_PATCH_TYPES:
            return _error(
                415,
                "UnsupportedMediaType",
                f"unsupported patch content type {content_type!r}; use a merge patch",
            )
        if not isinstance(body, dict):
            return _error(400, "BadRequest", "patch body must be a JSON object")
        if name not in self.leases:
            return self._not_found(name)
        if self._precondition_failed(name, body):
            return _conflict(name)
        patched = merge_patch(self.leases[name], body)
        return 200, self._stored(ns, name, patched)
