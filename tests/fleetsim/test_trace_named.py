"""Named traces, the Mooncake loader and load scaling."""

import gzip
import json

import pytest

from fleetsim.trace import (
    TraceError,
    TraceRequest,
    load_mooncake,
    load_named_trace,
    scale_load,
    trace_period_s,
)


def requests_every_second(count: int) -> list[TraceRequest]:
    return [TraceRequest(float(i), 100 + i, 10) for i in range(count)]


def test_named_traces_load():
    assert len(load_named_trace("azure-code")) == 8819
    assert len(load_named_trace("mooncake-conv")) == 12031
    assert len(load_named_trace("mooncake-synthetic")) == 3993


def test_mooncake_arrivals_in_seconds(tmp_path):
    path = tmp_path / "trace.jsonl.gz"
    lines = [
        {"timestamp": 500, "input_length": 10, "output_length": 2, "hash_ids": [1]},
        {"timestamp": 2000, "input_length": 20, "output_length": 3, "hash_ids": []},
    ]
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(json.dumps(line) for line in lines) + "\n")
    requests = load_mooncake(path)
    assert requests[0] == TraceRequest(0.0, 10, 2)
    assert requests[1] == TraceRequest(1.5, 20, 3)


def test_mooncake_bad_field_names_line(tmp_path):
    path = tmp_path / "trace.jsonl"
    path.write_text('{"timestamp": 0, "input_length": "x", "output_length": 1}\n')
    with pytest.raises(TraceError, match="line 1: input_length"):
        load_mooncake(path)


def test_unknown_trace_name_rejected():
    with pytest.raises(TraceError, match="unknown trace 'nope'"):
        load_named_trace("nope")


def test_compress_keeps_count_and_divides_duration():
    requests = requests_every_second(100)
    scaled = scale_load(requests, 4.0, "compress")
    assert len(scaled) == 100
    assert scaled[-1].arrival_s == pytest.approx(99.0 / 4.0)


def test_superpose_multiplies_count_and_keeps_duration():
    requests = requests_every_second(100)
    scaled = scale_load(requests, 3.0, "superpose", seed=7)
    period = trace_period_s(requests)
    assert len(scaled) == 300
    assert max(r.arrival_s for r in scaled) < period
    assert min(r.arrival_s for r in scaled) >= 0.0


def test_superpose_fraction_takes_part_of_a_copy():
    requests = requests_every_second(1000)
    scaled = scale_load(requests, 1.5, "superpose", seed=3)
    assert 1400 <= len(scaled) <= 1600


def test_superpose_is_seeded():
    requests = requests_every_second(50)
    first = scale_load(requests, 2.5, "superpose", seed=11)
    again = scale_load(requests, 2.5, "superpose", seed=11)
    other = scale_load(requests, 2.5, "superpose", seed=12)
    assert first == again
    assert first != other


@pytest.mark.parametrize("factor", [0.0, -1.0, float("nan")])
def test_scale_factor_must_be_positive(factor):
    with pytest.raises(ValueError, match="scale factor must be > 0"):
        scale_load(requests_every_second(3), factor, "compress")


def test_scale_mode_must_be_known():
    with pytest.raises(ValueError, match="unknown scale mode 'stretch'"):
        scale_load(requests_every_second(3), 2.0, "stretch")
