"""Explanations of a decision: policy, solver, inputs, limits and the HPA's target.

The cycle page, the variant page and the REST API show the same facts, built
here from a Decision row and its stored `analysis`:

- `analysis["policy"]`: `wva`, `wva-v1` or `hpa`. Rows stored before every
  decision recorded it fall back to the cycle's default policy.
- `analysis["solver"]`: `milp` or `greedy` when a `wva` allocation ran.
- `analysis["model"]`: the model's summary (spares, required and unserved
  capacity, demand) and `analysis["inputs"]`: the variant's own inputs.
- `analysis["peaks"]`: one-minute peaks of KV-cache usage and queue by pod.

Inputs are listed in a fixed order with a label and a unit. A key the
console does not know yet is listed too, under its own name, so a new
input of the analysis is never hidden.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from wva_web.control.models import Decision
from wva_web.dashboard.reasons import reason_text

# Known inputs as (key, label, unit). Units: "req/s", "fraction" (shown as a
# percentage), "code" (shown as it is), other units after the number, or ""
# for a value without a unit. Each label states whether the value belongs to
# the whole model, summed or averaged over its variants, or to this variant
# alone, because both kinds appear side by side in one table.
DEMAND_INPUTS = (
    ("observed_arrival_rate", "model: demand observed", "req/s"),
    ("pod_arrival_rate", "model: demand observed at the pods", "req/s"),
    ("gateway_arrival_rate", "model: demand observed at the gateway", "req/s"),
    ("forecast_rate", "model: demand forecast", "req/s"),
    ("arrival_rate", "model: demand used for sizing", "req/s"),
    ("completion_rate", "model: completion rate", "req/s"),
    ("avg_input_tokens", "model: input tokens per request", "tokens"),
    ("avg_output_tokens", "model: output tokens per request", "tokens"),
    ("known", "model: demand known", ""),
    ("reason", "model: demand unknown because", "code"),
    ("idle", "model: no traffic in the interval", ""),
    ("interval_s", "model: demand measured over", "s"),
    ("trend_per_s", "model: demand trend", "req/s per s"),
    ("horizon_s", "model: forecast horizon", "s"),
    ("forecast_points", "model: samples the forecast is fitted to", ""),
    ("reset_pods", "model: pods with reset counters", ""),
)
MODEL_INPUTS = (
    ("path", "model: wva path (slo or saturation)", ""),
    ("insufficient_data", "model: no SLO sizing because", "code"),
    ("required_rps", "model: required capacity, all variants", "req/s"),
    (
        "supply_rps",
        "model: supply, the sum over its variants of capacity per replica "
        "× current replicas",
        "req/s",
    ),
    ("spare_rps", "model: spare capacity (supply − required)", "req/s"),
    ("spare_kv", "model: mean spare KV-cache of non-saturated replicas", "fraction"),
    ("spare_queue", "model: mean spare queue of non-saturated replicas", "requests"),
    ("saturated", "model: saturated replicas", ""),
    ("not_reporting", "model: replicas not reporting", ""),
    ("pending", "model: replicas starting", ""),
    ("scale_down_check", "model: scale-down check", ""),
)
VARIANT_INPUTS = (
    ("capacity_rps", "this variant: capacity per replica", "req/s"),
    ("completion_rate", "this variant: completion rate", "req/s"),
    ("on_the_way", "this variant: replicas on the way", "replicas"),
    ("ready_with_data", "this variant: ready replicas with data", "replicas"),
    ("wanted_replicas", "this variant: replicas wanted before a limit", "replicas"),
    ("free_gpus", "this variant's accelerator: free GPUs", "GPUs"),
)
SINGULAR = {"replicas": "replica", "GPUs": "GPU", "requests": "request"}
# Summary keys shown elsewhere in the explanation, or not inputs at all.
SHOWN_ELSEWHERE = frozenset(
    {
        "policy",
        "solver",
        "success",
        "status",
        "solver_message",
        "unserved_rps",
        "reasons",
        "demand",
        "hpa_metrics",
    }
)
# Analysis keys that are not inputs: ids, bookkeeping and the HPA history.
NOT_INPUTS = frozenset(
    {
        "policy",
        "solver",
        "model",
        "inputs",
        "peaks",
        "victim_pods",
        "hpa",
        "decision_id",
        "action_id",
    }
)


@dataclass(frozen=True)
class Fact:
    """One input of a decision: its key, label, value and unit."""

    key: str
    label: str
    value: Any
    unit: str = ""

    @property
    def text(self) -> str:
        return format_value(self.value, self.unit)


@dataclass(frozen=True)
class Peak:
    """One-minute peaks of one pod; None where the sample was not valid."""

    pod: str
    kv_cache_usage: float | None
    num_requests_waiting: float | None


@dataclass
class Explanation:
    """Explanation of one decision: the facts it used and the limits it met."""

    policy: str
    solver: str | None
    reasons: list[str]
    bound_by: str
    inputs: list[Fact] = field(default_factory=list)
    hpa_metrics: list[dict[str, Any]] = field(default_factory=list)
    peaks: list[Peak] = field(default_factory=list)
    hpa_target: int | None = None
    hpa_reasons: list[str] = field(default_factory=list)
    unserved_rps: float | None = None
    victim_pods: list[str] = field(default_factory=list)
    solver_message: str = ""

    @property
    def peak_kv(self) -> float | None:
        values = [p.kv_cache_usage for p in self.peaks if p.kv_cache_usage is not None]
        return max(values) if values else None

    @property
    def peak_waiting(self) -> float | None:
        values = [
            p.num_requests_waiting
            for p in self.peaks
            if p.num_requests_waiting is not None
        ]
        return max(values) if values else None

    @property
    def unserved_text(self) -> str:
        if self.unserved_rps is None:
            return "not computed: no SLO sizing ran for this model"
        return format_value(self.unserved_rps, "req/s")

    def as_json(self) -> dict[str, Any]:
        """Return the explanation as the REST API shows it: codes with their texts."""
        return {
            "policy": self.policy,
            "solver": self.solver,
            "solver_message": self.solver_message,
            "reasons": [coded(code) for code in self.reasons],
            "bound_by": coded(self.bound_by) if self.bound_by else None,
            "inputs": [
                {
                    "key": fact.key,
                    "label": fact.label,
                    "value": json_value(fact.value),
                    "unit": fact.unit,
                }
                for fact in self.inputs
            ],
            "hpa_metrics": [
                {key: json_value(value) for key, value in item.items()}
                for item in self.hpa_metrics
            ],
            "peaks": {
                "kv_cache_usage": self.peak_kv,
                "num_requests_waiting": self.peak_waiting,
                "pods": [
                    {
                        "pod": peak.pod,
                        "kv_cache_usage": peak.kv_cache_usage,
                        "num_requests_waiting": peak.num_requests_waiting,
                    }
                    for peak in self.peaks
                ],
            },
            "hpa": {
                "target_replicas": self.hpa_target,
                "reasons": [coded(code) for code in self.hpa_reasons],
            },
            "unserved_rps": self.unserved_rps,
            "victim_pods": list(self.victim_pods),
        }


def coded(code: str) -> dict[str, str]:
    return {"code": code, "text": reason_text(code)}


def json_value(value: Any) -> Any:
    """Return a JSON-safe value: NaN and infinity become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_value(value: Any, unit: str) -> str:
    """Format an input for the pages, e.g. "12.5 req/s" or "7.5%"; None is unknown."""
    if value is None or value == "":
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return "unknown"
        if unit == "fraction":
            return f"{value * 100:.1f}%"
        number = f"{value:.3f}".rstrip("0").rstrip(".")
        if number == "1":
            unit = SINGULAR.get(unit, unit)
        return f"{number} {unit}" if unit and unit != "code" else number
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) or "none"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _facts(
    source: dict[str, Any],
    known: tuple[tuple[str, str, str], ...],
    skip: frozenset[str],
) -> list[Fact]:
    """List the known keys in order, then the unknown ones under their own name."""
    facts = [
        Fact(key, label, source[key], unit)
        for key, label, unit in known
        if source.get(key) not in (None, "")
    ]
    names = {key for key, _, _ in known}
    for key in sorted(source):
        if key in names or key in skip or source[key] in (None, ""):
            continue
        facts.append(Fact(key, key.replace("_", " "), source[key]))
    return facts


def demand_of(analysis: dict[str, Any]) -> dict[str, Any]:
    """Return the model's demand (observed, forecast, used), or {} when not recorded."""
    model = _mapping(analysis.get("model"))
    return _mapping(analysis.get("demand")) or _mapping(model.get("demand"))


def gateway_sized(demand: dict[str, Any]) -> bool:
    """Tell whether the observed demand is the gateway's rate, above the pods'."""
    gateway = _number(demand.get("gateway_arrival_rate"))
    pods = _number(demand.get("pod_arrival_rate"))
    return gateway is not None and pods is not None and gateway > pods


def input_facts(analysis: dict[str, Any]) -> list[Fact]:
    """List the inputs of one decision: demand, model summary, then the variant's."""
    model = _mapping(analysis.get("model"))
    inputs = _mapping(analysis.get("inputs"))
    demand = demand_of(analysis)
    facts = _facts(demand, DEMAND_INPUTS, frozenset())

    if gateway_sized(demand):
        facts.append(
            Fact(
                "observed_from_gateway",
                "model: source of the observed demand",
                "the gateway's request rate, which is above the pods' rate",
            )
        )

    facts += _facts(model, MODEL_INPUTS, SHOWN_ELSEWHERE)
    facts += _facts(inputs, VARIANT_INPUTS, SHOWN_ELSEWHERE)
    extra = {k: v for k, v in analysis.items() if k not in NOT_INPUTS}
    facts += _facts(extra, VARIANT_INPUTS, SHOWN_ELSEWHERE)
    # The `wva` summary and a variant's inputs repeat the model's spares.
    unique: list[Fact] = []
    for fact in facts:
        if not any(f.key == fact.key and f.value == fact.value for f in unique):
            unique.append(fact)
    return unique


def peaks_of(analysis: dict[str, Any]) -> list[Peak]:
    peaks = []
    for pod, values in sorted(_mapping(analysis.get("peaks")).items()):
        row = _mapping(values)
        peaks.append(
            Peak(
                pod=str(pod),
                kv_cache_usage=_number(row.get("kv_cache_usage")),
                num_requests_waiting=_number(row.get("num_requests_waiting")),
            )
        )
    return peaks


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def explain(decision: Decision, default_policy: str = "") -> Explanation:
    """Build the explanation of one decision.

    `default_policy` is the policy shown for rows that do not record one,
    usually the cycle's `policy`.
    """
    analysis = _mapping(decision.analysis)
    model = _mapping(analysis.get("model"))
    inputs = _mapping(analysis.get("inputs"))
    policy = str(analysis.get("policy") or default_policy or "unknown")
    solver = analysis.get("solver") or model.get("solver")
    victims = [str(pod) for pod in analysis.get("victim_pods") or []]
    if not victims and decision.victim_pod:
        victims = [decision.victim_pod]
    unserved = _number(model.get("unserved_rps"))
    if unserved is None and model.get("path") == "slo" and model.get("success"):
        # The allocation lists only models with a shortfall.
        unserved = 0.0
    hpa_metrics = [
        _mapping(item) for item in inputs.get("hpa_metrics") or [] if _mapping(item)
    ]
    return Explanation(
        policy=policy,
        solver=str(solver) if solver else None,
        solver_message=str(model.get("solver_message") or ""),
        reasons=[str(code) for code in decision.reasons or []],
        bound_by=decision.bound_by,
        inputs=input_facts(analysis),
        hpa_metrics=hpa_metrics,
        peaks=peaks_of(analysis),
        hpa_target=decision.hpa_target_replicas,
        hpa_reasons=[str(code) for code in decision.hpa_reasons or []],
        unserved_rps=unserved,
        victim_pods=victims,
    )
