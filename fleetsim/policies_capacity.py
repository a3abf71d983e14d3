"""Benchmark one simulated replica to find its capacity within a service class.

A deployment fits its latency profile from a benchmark of the server; the
simulator does the same. `benchmark_capacity` replays Poisson arrivals of
requests drawn from the trace against a single replica and searches the
highest rate at which at least `ATTAINMENT` of them meet the class's TTFT
and ITL targets. `static-peak` and `oracle` size with it, and `wva` gets a
latency profile whose prefill coefficient is fitted so that the queueing
model of `optimizer.queueing` gives the same capacity.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from fleetsim.engine import Cluster, FleetSpec, VariantSpec
from fleetsim.replica import AcceleratorProfile, EngineConfig, Request, RequestState
from fleetsim.trace import TraceRequest
from optimizer.queueing import LatencyProfile, replica_capacity_rps

ATTAINMENT = 0.99
BENCHMARK_S = 300.0
# Requests arriving in the first seconds of a benchmark find an empty
# replica; they are not scored.
WARMUP_S = 60.0
SEARCH_STEPS = 8


def _attainment(
    profile: AcceleratorProfile,
    engine: EngineConfig,
    sample: Sequence[TraceRequest],
    rate: float,
    ttft_s: float,
    itl_s: float,
    seed: int,
) -> float:
    rng = random.Random(f"benchmark:{seed}:{profile.name}:{rate:.6f}")
    fleet = FleetSpec(
        namespace="benchmark",
        model="model",
        gpus={profile.name: 1},
        node_labels={profile.name: profile.name},
        variants=(VariantSpec("replica", profile.name, 1, 1, engine),),
    )
    cluster = Cluster(fleet, {profile.name: profile}, startup_delay_s=0.0, seed=seed)
    scored: list[Request] = []
    now = 0.0
    while True:
        now += rng.expovariate(rate)
        if now >= BENCHMARK_S:
            break
        request = sample[rng.randrange(len(sample))]
        cluster.advance_to(now)
        routed = cluster.submit(request.prompt_tokens, request.output_tokens)
        if now >= WARMUP_S and routed is not None:
            scored.append(routed)
    cluster.advance_to(BENCHMARK_S + 120.0)
    if not scored:
        return 1.0
    good = 0
    for request in scored:
        if request.state is not RequestState.DONE or request.first_token_at is None:
            continue
        if request.first_token_at - request.arrival > ttft_s:
            continue
        if request.output > 1 and request.finished_at is not None:
            itl = (request.finished_at - request.first_token_at) / (request.output - 1)
            if itl > itl_s:
                continue
        good += 1
    return good / len(scored)


def meets_targets_alone(
    profile: AcceleratorProfile,
    engine: EngineConfig,
    request: TraceRequest,
    ttft_s: float,
    itl_s: float,
) -> bool:
    """Tell whether the request meets both targets on an otherwise idle replica.

    Its prefill runs in chunks of `max_num_batched_tokens`, each one
    iteration over the context so far; each decode step uses the mean
    context `I + O / 2`.
    """
    done = 0
    ttft_ms = 0.0
    while done < request.prompt_tokens or done == 0:
        chunk = min(engine.max_num_batched_tokens, request.prompt_tokens - done)
        ttft_ms += profile.step_ms(1, done, max(chunk, 1))
        done += max(chunk, 1)
    context = request.prompt_tokens + request.output_tokens // 2
    itl_ms = profile.step_ms(1, context, 0)
    return ttft_ms <= ttft_s * 1000.0 and (
        request.output_tokens <= 1 or itl_ms <= itl_s * 1000.0
    )


def benchmark_capacity(
    profile: AcceleratorProfile,
    engine: EngineConfig,
    requests: Sequence[TraceRequest],
    ttft_s: float,
    itl_s: float,
    seed: int = 1,
) -> float:
    """Return the highest rate (requests/s) one replica serves at ATTAINMENT.

    Requests longer than the engine's context, and requests that miss a
    target even alone on the replica, are left out of the draw: load cannot
    help them, so they would only hide the effect of load. Returns 0.0 when
    no request is left or even 0.05 requests/s misses the attainment.
    """
    sample = [
        r
        for r in requests
        if r.prompt_tokens + max(1, r.output_tokens) <= engine.max_model_len
        and meets_targets_alone(profile, engine, r, ttft_s, itl_s)
    ]
    if not sample:
        return 0.0
    low, high = 0.0, 1.0

    def meets(rate: float) -> bool:
        score = _attainment(profile, engine, sample, rate, ttft_s, itl_s, seed)
        return score >= ATTAINMENT

    if not meets(0.05):
        return 0.0
    while meets(high) and high < 1024.0:
        low, high = high, high * 2.0
    for _ in range(SEARCH_STEPS):
        middle = (low + high) / 2.0
        if meets(middle):
            low = middle
        else:
            high = middle
    return max(low, 0.05)


def fit_profile(
    model: LatencyProfile,
    avg_input: float,
    avg_output: float,
    ttft_ms: float,
    itl_ms: float,
    capacity: float,
) -> LatencyProfile:
    """Scale the prefill coefficient `delta` until the model's capacity matches.

    The queueing model charges prefill as `gamma + delta * I * n`, while a
    chunked-prefill engine spreads it over the batch, so the raw
    coefficient underestimates capacity. Returns the model unchanged when
    `capacity` is 0 or no scale in [1e-4, 10] reaches it.
    """
    if capacity <= 0.0:
        return model

    def capacity_at(factor: float) -> float:
        candidate = dataclasses.replace(model, delta=model.delta * factor)
        return replica_capacity_rps(candidate, avg_input, avg_output, ttft_ms, itl_ms)

    low, high = 1e-4, 10.0
    if capacity_at(low) < capacity:
        return dataclasses.replace(model, delta=model.delta * low)
    for _ in range(30):
        middle = (low * high) ** 0.5
        if capacity_at(middle) >= capacity:
            low = middle
        else:
            high = middle
    return dataclasses.replace(model, delta=model.delta * low)
