"""Prometheus exposition of one replica's vLLM metrics."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from fleetsim.replica import Histogram, ReplicaEngine


class ReplicaCollector(Collector):
    """Collects the vLLM V1 metric families of one engine on each scrape."""

    def __init__(self, engine: ReplicaEngine, model_name: str) -> None:
        self.engine = engine
        self.model_name = model_name

    def collect(self) -> Iterator[Metric]:
        engine = self.engine
        counters = engine.counters
        labels = ["model_name", "engine"]
        values = [self.model_name, "0"]
        gauges = (
            (
                "vllm:kv_cache_usage_perc",
                "KV-cache usage, 1 means 100 percent.",
                engine.kv_usage,
            ),
            (
                "vllm:num_requests_waiting",
                "Requests waiting to be scheduled.",
                engine.n_waiting,
            ),
            (
                "vllm:num_requests_running",
                "Requests in the running batch.",
                len(engine.running),
            ),
        )
        for name, documentation, value in gauges:
            gauge = GaugeMetricFamily(name, documentation, labels=labels)
            gauge.add_metric(values, float(value))
            yield gauge
        totals = (
            (
                "vllm:num_preemptions",
                "Preemptions by the engine.",
                counters.preemptions,
            ),
            ("vllm:prompt_tokens", "Prefilled prompt tokens.", counters.prompt_tokens),
            ("vllm:generation_tokens", "Generated tokens.", counters.generation_tokens),
        )
        for name, documentation, value in totals:
            counter = CounterMetricFamily(name, documentation, labels=labels)
            counter.add_metric(values, float(value))
            yield counter
        success = CounterMetricFamily(
            "vllm:request_success",
            "Finished requests by finish reason.",
            labels=[*labels, "finished_reason"],
        )
        success.add_metric([*values, "stop"], float(counters.success))
        yield success
        histograms = (
            (
                "vllm:time_to_first_token_seconds",
                "Time to first token in seconds.",
                counters.ttft,
            ),
            (
                "vllm:inter_token_latency_seconds",
                "Inter-token latency in seconds.",
                counters.itl,
            ),
            (
                "vllm:e2e_request_latency_seconds",
                "End-to-end latency in seconds.",
                counters.e2e,
            ),
            (
                "vllm:request_prompt_tokens",
                "Prompt tokens per finished request.",
                counters.request_prompt_tokens,
            ),
            (
                "vllm:request_generation_tokens",
                "Generated tokens per finished request.",
                counters.request_generation_tokens,
            ),
        )
        for name, documentation, histogram in histograms:
            yield _histogram_family(name, documentation, labels, values, histogram)
        info = GaugeMetricFamily(
            "vllm:cache_config_info",
            "KV-cache configuration.",
            labels=["engine", "num_gpu_blocks", "block_size"],
        )
        info.add_metric(
            ["0", str(engine.total_blocks), str(engine.config.block_size)], 1.0
        )
        yield info


def _histogram_family(
    name: str,
    documentation: str,
    labels: list[str],
    values: list[str],
    histogram: Histogram,
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    buckets = [
        (_format_bound(bound), float(count)) for bound, count in histogram.buckets()
    ]
    buckets.append(("+Inf", float(histogram.count)))
    family.add_metric(values, buckets, sum_value=histogram.sum)
    return family


def _format_bound(bound: float) -> str:
    return repr(float(bound))


def render(engine: ReplicaEngine, model_name: str) -> bytes:
    """Return the engine's metrics in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReplicaCollector(engine, model_name))
    return generate_latest(registry)
