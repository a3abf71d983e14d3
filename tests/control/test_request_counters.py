"""Request counters of a pod: the emulator's export and the console's parser."""

from __future__ import annotations

from pathlib import Path

from fleetsim.engine import load_accelerators
from fleetsim.metrics import render
from fleetsim.replica import EngineConfig, ReplicaEngine, Request
from tests.control.fakes import NOW
from wva_web.integrations import metrics
from wva_web.integrations.metrics import REQUEST_COUNTER_FIELDS, parse_exposition

LABELS = 'model_name="m",engine="0"'
GAUGES = (
    f"vllm:kv_cache_usage_perc{{{LABELS}}} 0.2\n"
    f"vllm:num_requests_waiting{{{LABELS}}} 1\n"
    f"vllm:num_requests_running{{{LABELS}}} 3\n"
)
COUNTERS = (
    "# TYPE vllm:request_success counter\n"
    f'vllm:request_success_total{{{LABELS},finished_reason="stop"}} 40\n'
    f'vllm:request_success_total{{{LABELS},finished_reason="length"}} 2\n'
    f'vllm:request_success_total{{{LABELS},finished_reason="abort"}} 1\n'
    "# TYPE vllm:request_prompt_tokens histogram\n"
    f'vllm:request_prompt_tokens_bucket{{{LABELS},le="+Inf"}} 43\n'
    f"vllm:request_prompt_tokens_count{{{LABELS}}} 43\n"
    f"vllm:request_prompt_tokens_sum{{{LABELS}}} 21500\n"
    "# TYPE vllm:request_generation_tokens histogram\n"
    f'vllm:request_generation_tokens_bucket{{{LABELS},le="+Inf"}} 43\n'
    f"vllm:request_generation_tokens_count{{{LABELS}}} 43\n"
    f"vllm:request_generation_tokens_sum{{{LABELS}}} 4300\n"
)


def test_success_sums_finish_reasons() -> None:
    sample = parse_exposition("p", GAUGES + COUNTERS, NOW)
    assert sample.request_success_total == 43.0
    assert sample.field_status["request_success_total"] == metrics.OK


def test_token_histograms_give_sum_and_count() -> None:
    sample = parse_exposition("p", GAUGES + COUNTERS, NOW)
    assert sample.request_prompt_tokens_sum == 21500.0
    assert sample.request_prompt_tokens_count == 43.0
    assert sample.request_generation_tokens_sum == 4300.0
    assert sample.request_generation_tokens_count == 43.0


def test_missing_counters_are_none_not_zero() -> None:
    # Given a pod that exports the gauges but no request counters.
    sample = parse_exposition("p", GAUGES, NOW)
    # Then every counter is None with status missing, and the pod still reports.
    for name in REQUEST_COUNTER_FIELDS:
        assert getattr(sample, name) is None
        assert sample.field_status[name] == metrics.MISSING
    assert sample.status == metrics.OK
    assert sample.reporting


def test_non_finite_counter_is_flagged() -> None:
    body = GAUGES + COUNTERS.replace(
        f"vllm:request_prompt_tokens_sum{{{LABELS}}} 21500",
        f"vllm:request_prompt_tokens_sum{{{LABELS}}} NaN",
    )
    sample = parse_exposition("p", body, NOW)
    assert sample.request_prompt_tokens_sum is None
    assert sample.field_status["request_prompt_tokens_sum"] == metrics.NON_FINITE
    assert sample.status == metrics.OK


def test_emulated_replica_exports_counters() -> None:
    # Given an emulated L4 replica that finished five requests.
    profile = load_accelerators(Path("data/accelerators.csv"))["L4"]
    engine = ReplicaEngine(profile, EngineConfig(), 0.0)
    for rid in range(5):
        engine.enqueue(Request(rid, 0.0, 100 + rid, 20))
    engine.advance_to(60.0)
    # When its exposition is parsed by the console.
    sample = parse_exposition("p", render(engine, "m").decode(), NOW)
    # Then the success counter and both token histograms are read.
    assert sample.request_success_total == 5.0
    assert sample.request_prompt_tokens_count == 5.0
    assert sample.request_prompt_tokens_sum == 510.0
    assert sample.request_generation_tokens_count == 5.0
    assert sample.request_generation_tokens_sum == 100.0
