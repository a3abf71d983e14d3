"""What one control cycle read about a variant, and what it decided for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from wva_web.catalog.models import Variant
from wva_web.integrations import kube, metrics


@dataclass
class VariantView:
    """Workload, pods and samples of one variant as one cycle read them."""

    variant: Variant
    current: int | None = None
    pods: list[kube.PodInfo] = field(default_factory=list)
    samples: dict[str, metrics.PodMetrics] = field(default_factory=dict)
    hpa_name: str | None = None
    # Status of that HPA, for the read-back of the published desired count.
    hpa_status: kube.HpaStatus | None = None
    kube_error: str = ""
    # When the workload could not be read (`current` is None): the replica
    # count of the variant's last decision and its last published desired
    # count, None where no earlier cycle knew them.
    last_current: int | None = None
    last_ready: int | None = None
    last_desired: int | None = None
    # terminationGracePeriodSeconds of the pod template; None when not read.
    grace_period_s: int | None = None
    # One-minute peaks fed to the analysis, by pod: None where the current
    # scrape of that field was not valid.
    peaks: dict[str, dict[str, float | None]] = field(default_factory=dict)
    # Pods flagged by the safety rules, by name.
    crash_looping: list[str] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)
    # Max replicas the analysis may grow to, below the catalogue max when a
    # limit applies, and that limit's reason code (empty without one).
    growth_limit: int | None = None
    limit_reason: str = ""
    # Directions (+1 up, -1 down) of recently rejected proposals, with the
    # end of each cool-down.
    rejected: dict[int, datetime] = field(default_factory=dict)

    @property
    def max_replicas(self) -> int:
        """The effective max: the catalogue max, or the lower growth limit."""
        if self.growth_limit is None:
            return self.variant.max_replicas
        return min(self.variant.max_replicas, self.growth_limit)

    @property
    def live_pods(self) -> list[kube.PodInfo]:
        """Pods that are not terminating: the only ones that count as capacity."""
        return [pod for pod in self.pods if not pod.terminating]

    @property
    def ready_pods(self) -> list[kube.PodInfo]:
        return [pod for pod in self.live_pods if pod.ready and pod.phase == "Running"]

    @property
    def pending_pods(self) -> list[kube.PodInfo]:
        return [pod for pod in self.live_pods if not pod.ready]

    @property
    def not_capacity(self) -> list[str]:
        """Live pods that serve nothing and are left out of the analysis."""
        return [
            pod.name
            for pod in self.live_pods
            if pod.name in self.crash_looping or pod.name in self.silent
        ]

    def invalid_pods(self) -> list[str]:
        """Ready pods whose KV-cache or queue sample is missing or invalid."""
        names = []
        for pod in self.ready_pods:
            sample = self.samples.get(pod.name)
            if sample is None or not sample.reporting:
                names.append(pod.name)
        return names

    def kv_missing(self) -> bool:
        for pod in self.ready_pods:
            sample = self.samples.get(pod.name)
            if sample is None or sample.field_status.get("kv_cache_usage") != "ok":
                return True
        return False


@dataclass
class VariantDecision:
    """The outcome for one variant, before it is stored."""

    target: int
    reasons: list[str] = field(default_factory=list)
    bound_by: str = ""
    victim_pod: str = ""
    message: str = ""
    analysis: dict[str, Any] = field(default_factory=dict)
    hpa_target: int | None = None
    hpa_reasons: list[str] = field(default_factory=list)
    hpa_history: list[list[Any]] = field(default_factory=list)
    # Reason code that makes a reduction wait for an approver even in mode auto.
    needs_approval: str = ""
    # Conditions added by the safety rules, stored on VariantState.
    conditions: list[dict[str, Any]] = field(default_factory=list)
    # Reason code of a rule that held a scale-up of this variant; the cycle
    # supersedes the variant's older pending scale-up proposals.
    held_scale_up: str = ""
    # False when the live count could not be read and no earlier cycle knew
    # a count: `target` is then a placeholder and is neither stored nor
    # published.
    known: bool = True
