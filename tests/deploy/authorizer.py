"""A small RBAC evaluator over the shipped manifests, and a request parser.

It follows the Kubernetes RBAC rules that the manifests use. A rule allows
a request when its apiGroups, resources (`pods`, `deployments/scale`),
verbs and, if given, resourceNames all match, and "*" matches anything. A Role
applies in the namespace of the RoleBinding that names the subject; a
ClusterRole bound by a ClusterRoleBinding applies everywhere. There is no
deny rule, so a request is allowed when any bound rule allows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
SUBJECT = ("ServiceAccount", "wva-console", "wva-system")
VERBS = (
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
)


@dataclass(frozen=True)
class Request:
    """One API request to authorize; namespace "" means cluster scope."""

    verb: str
    group: str
    resource: str
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def resource_path(self) -> str:
        if self.subresource:
            return f"{self.resource}/{self.subresource}"
        return self.resource


def load_documents(*names: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in names:
        text = (MANIFESTS / name).read_text()
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def rule_allows(rule: dict[str, Any], request: Request) -> bool:
    groups = rule.get("apiGroups") or []
    resources = rule.get("resources") or []
    verbs = rule.get("verbs") or []
    names = rule.get("resourceNames") or []
    if "*" not in groups and request.group not in groups:
        return False
    if "*" not in verbs and request.verb not in verbs:
        return False
    wildcard_sub = f"*/{request.subresource}" if request.subresource else "*"
    if not {"*", request.resource_path, wildcard_sub} & set(resources):
        return False
    return not names or request.name in names


class Authorizer:
    """Evaluates `kubectl auth can-i` for one subject over a set of manifests."""

    def __init__(
        self, docs: list[dict[str, Any]], subject: tuple[str, str, str] = SUBJECT
    ) -> None:
        self.docs = docs
        self.subject = subject

    def _roles(self, kind: str) -> dict[tuple[str, str], list[dict[str, Any]]]:
        roles: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for doc in self.docs:
            if doc["kind"] == kind:
                metadata = doc["metadata"]
                roles[(metadata.get("namespace", ""), metadata["name"])] = doc["rules"]
        return roles

    def _names_subject(self, binding: dict[str, Any]) -> bool:
        kind, name, namespace = self.subject
        wanted = (kind, name, namespace)
        return any(
            (s.get("kind"), s.get("name"), s.get("namespace")) == wanted
            for s in binding.get("subjects") or []
        )

    def bound_rules(self, namespace: str) -> list[dict[str, Any]]:
        """Rules that apply to a request in `namespace` ("" for cluster scope)."""
        roles = self._roles("Role")
        cluster_roles = self._roles("ClusterRole")
        rules: list[dict[str, Any]] = []
        for doc in self.docs:
            if doc["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
                continue
            if not self._names_subject(doc):
                continue
            ref = doc["roleRef"]
            if doc["kind"] == "ClusterRoleBinding":
                rules.extend(cluster_roles.get(("", ref["name"]), []))
                continue
            if doc["metadata"]["namespace"] != namespace or not namespace:
                continue
            if ref["kind"] == "ClusterRole":
                rules.extend(cluster_roles.get(("", ref["name"]), []))
            else:
                rules.extend(roles.get((namespace, ref["name"]), []))
        return rules

    def grants(self, namespace: str) -> set[tuple[str, str, str]]:
        """Expand the rules bound in `namespace` to (verb, group, resource) triples.

        Rules limited by resourceNames count like the others here; `can`
        checks the names.
        """
        granted: set[tuple[str, str, str]] = set()
        for rule in self.bound_rules(namespace):
            for group in rule.get("apiGroups") or []:
                for resource in rule.get("resources") or []:
                    for verb in rule.get("verbs") or []:
                        granted.add((verb, group, resource))
        return granted

    def can(self, request: Request) -> bool:
        rules = self.bound_rules(request.namespace)
        return any(rule_allows(rule, request) for rule in rules)


def parse_request(method: str, url: str) -> Request:
    """Map an HTTP request of the Kubernetes API to (verb, group, resource, ...).

    Follows the API server's request info: /api/v1/... is the core group,
    /apis/GROUP/VERSION/... a named group; GET on a collection is list, or
    watch with ?watch=true; POST create, PUT update, PATCH patch.
    """
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if segments[0] == "api":
        group, rest = "", segments[2:]
    elif segments[0] == "apis":
        group, rest = segments[1], segments[3:]
    else:
        raise ValueError(f"not a Kubernetes resource path: {parts.path}")
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    watch = parse_qs(parts.query).get("watch", [""])[0] in ("true", "1")
    if method == "GET" and name:
        verb = "get"
    elif method == "GET":
        verb = "watch" if watch else "list"
    else:
        verbs = {
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }
        verb = verbs[method]
        if method == "DELETE" and not name:
            verb = "deletecollection"
    return Request(verb, group, resource, subresource, namespace, name)
