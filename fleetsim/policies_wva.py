"""The console's policies in the simulator: `wva-v1` and `wva`.

Both are fed the way the control cycle feeds them. `wva-v1` gets
`optimizer.saturation.VariantInput` rows with one-minute peaks and the
last target as `desired_replicas`. `wva` gets the JSON state of
`optimizer.state` with the measured demand smoothed, held and raised to its
forecast one start-up delay ahead (`optimizer.forecast.smoothed_arrival_rate`),
and the applied scale events.
`optimizer.policy_wva.decide_wva` then sizes every variant in one
allocation. Both drain the replicas they remove.
"""

from __future__ import annotations

from typing import Any

from fleetsim.policies import (
    MODEL,
    Decision,
    Observation,
    PolicyContext,
    VariantView,
    latency_profile,
    least_loaded,
)
from optimizer.forecast import gateway_counts_all, smoothed_arrival_rate
from optimizer.policy_wva import decide_wva
from optimizer.saturation import (
    ReplicaSample,
    SaturationConfig,
    VariantInput,
    analyse_model,
)
from optimizer.state import parse_state

# Token lengths assumed before the first completion is seen, for the latency
# profile only: sizing itself waits for measured lengths.
FALLBACK_TOKENS = (1024.0, 256.0)


def _samples(variant: VariantView) -> tuple[ReplicaSample, ...]:
    return tuple(
        ReplicaSample(
            pod=r.pod,
            kv_cache_usage=r.kv_cache_usage if r.ready else None,
            num_requests_waiting=r.num_requests_waiting if r.ready else None,
            num_requests_running=r.num_requests_running if r.ready else None,
            phase=r.phase,
            ready=r.ready,
        )
        for r in variant.replicas
    )


class WvaV1Policy:
    """The paper-era saturation policy, as `optimizer.saturation` implements it."""

    name = "wva-v1"
    drains = True

    def __init__(self, context: PolicyContext) -> None:
        self.config = SaturationConfig()
        self.desired: dict[str, int] = {}

    def initial_replicas(self) -> dict[str, int] | None:
        return None

    def decide(self, observation: Observation) -> dict[str, Decision]:
        inputs = tuple(
            VariantInput(
                name=v.name,
                usd_per_replica_hour=v.usd_per_replica_hour,
                current_replicas=v.spec_replicas,
                ready_replicas=v.ready_replicas,
                min_replicas=v.min_replicas,
                max_replicas=v.max_replicas,
                replicas=_samples(v),
                pending_replicas=v.pending_replicas,
                desired_replicas=self.desired.get(v.name),
            )
            for v in observation.variants
        )
        analysis = analyse_model(inputs, self.config)
        decisions = {}
        for variant, result in zip(
            observation.variants, analysis.decisions, strict=True
        ):
            target = int(result.target_replicas)
            self.desired[variant.name] = target
            victims = (result.victim_pod,) if result.victim_pod else ()
            decisions[variant.name] = Decision(
                target, victims + least_loaded(variant), tuple(result.reasons)
            )
        return decisions


class WvaPolicy:
    """The product's policy: SLO sizing on measured demand, forecast, allocation."""

    name = "wva"
    drains = True

    def __init__(self, context: PolicyContext) -> None:
        self.context = context
        self.desired: dict[str, int] = {}
        self.rates: list[tuple[float, float]] = []
        self.last_tokens = FALLBACK_TOKENS
        self.tokens_known = False

    def initial_replicas(self) -> dict[str, int] | None:
        return None

    def decide(self, observation: Observation) -> dict[str, Decision]:
        result = decide_wva(parse_state(self.state_json(observation)))
        by_variant = {d.variant: d for d in result.decisions}
        decisions = {}
        for variant in observation.variants:
            decision = by_variant[variant.name]
            target = int(decision.target_replicas)
            self.desired[variant.name] = target
            victims = tuple(decision.victim_pods) + least_loaded(variant)
            decisions[variant.name] = Decision(target, victims, tuple(decision.reasons))
        return decisions

    def demand_json(self, observation: Observation) -> dict[str, Any] | None:
        """Return the smoothed, held and forecast demand, None before token lengths."""
        demand = observation.demand
        if demand.avg_input_tokens is not None and demand.avg_output_tokens is not None:
            self.last_tokens = (demand.avg_input_tokens, demand.avg_output_tokens)
            self.tokens_known = True
        # Requests the router rejects reach no replica's counters, so the
        # gateway's count is the larger one while the fleet is saturated.
        observed = max(demand.arrival_rate, demand.gateway_arrival_rate or 0.0)
        self.rates.append((observation.now_s, max(0.0, observed)))
        self.rates = [p for p in self.rates if observation.now_s - p[0] <= 600.0]
        if not self.tokens_known:
            return None
        sized = smoothed_arrival_rate(
            self.rates, observation.now_s, self.context.startup_delay_s
        )
        return {
            "arrival_rate": sized.rate,
            "completion_rate": demand.completion_rate,
            "avg_input_tokens": self.last_tokens[0],
            "avg_output_tokens": self.last_tokens[1],
            "includes_rejected": gateway_counts_all(
                demand.arrival_rate, demand.gateway_arrival_rate
            ),
        }

    def state_json(self, observation: Observation) -> dict[str, Any]:
        """Build the `optimizer.state` document the control cycle would send."""
        sizing = self.context.sizing_class
        demand = self.demand_json(observation)
        document: dict[str, Any] = {
            "policy": "wva",
            "now_s": observation.now_s,
            "accelerators": [
                self._accelerator_json(name, observation)
                for name in sorted(self.context.gpus)
            ],
            "service_classes": [
                {
                    "name": sizing.name,
                    "priority": sizing.priority,
                    "ttft_ms": sizing.ttft_ms,
                    "itl_ms": sizing.itl_ms,
                }
            ],
            "variants": [
                self._variant_json(v, observation) for v in observation.variants
            ],
        }
        if demand is not None:
            document["demand"] = {MODEL: demand}
        return document

    def _accelerator_json(self, name: str, observation: Observation) -> dict[str, Any]:
        row: dict[str, Any] = {
            "name": name,
            "usd_per_gpu_hour": self.context.profiles[name].usd_per_gpu_hour,
            "gpus_available": observation.free_gpus.get(name, 0),
        }
        curve = self.context.power.get(name)
        if curve is not None:
            row["power_w"] = {
                "idle": curve.idle_w,
                "mid": curve.mid_w,
                "full": curve.full_w,
            }
        return row

    def _variant_json(self, variant: VariantView, obs: Observation) -> dict[str, Any]:
        model = self.context.fitted.get(variant.name)
        if model is None:
            avg_input, avg_output = self.last_tokens
            model = latency_profile(
                self.context.profiles[variant.accelerator],
                variant.engine,
                avg_input,
                avg_output,
            )
        return {
            "name": variant.name,
            "model": MODEL,
            "accelerator": variant.accelerator,
            "service_class": self.context.sizing_class.name,
            "gpus_per_replica": variant.gpus_per_replica,
            "min_replicas": variant.min_replicas,
            "max_replicas": variant.max_replicas,
            "current_replicas": variant.spec_replicas,
            "ready_replicas": variant.ready_replicas,
            "pending_replicas": variant.pending_replicas,
            "desired_replicas": self.desired.get(variant.name),
            "completion_rate": variant.completion_rate,
            "profile": {
                "alpha": model.alpha,
                "beta": model.beta,
                "gamma": model.gamma,
                "delta": model.delta,
                "kv_tokens": variant.kv_tokens,
                "max_num_seqs": variant.engine.max_num_seqs,
                "max_num_batched_tokens": variant.engine.max_num_batched_tokens,
            },
            "scale_events": [
                {"at_s": at_s, "from": before, "to": after}
                for at_s, name, before, after in obs.scale_events
                if name == variant.name
            ],
            "replicas": [
                {
                    "pod": r.pod,
                    "phase": r.phase,
                    "ready": r.ready,
                    "kv_cache_usage": r.kv_cache_usage if r.ready else None,
                    "num_requests_waiting": r.num_requests_waiting if r.ready else None,
                    "num_requests_running": r.num_requests_running if r.ready else None,
                    "num_gpu_blocks": variant.kv_tokens // variant.engine.block_size,
                    "block_size": variant.engine.block_size,
                    "pending_s": r.pending_s if r.phase == "Pending" else None,
                    "scheduled": r.scheduled,
                }
                for r in variant.replicas
            ],
        }
