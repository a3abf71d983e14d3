"""Trace loading, validation, compression and looping."""

from pathlib import Path

import pytest

from fleetsim.trace import TraceError, load_trace, replay, trace_period_s

DATA = Path(__file__).resolve().parents[2] / "data"
HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def write(tmp_path: Path, rows: str) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(HEADER + rows)
    return path


def test_azure_trace_loads_all_rows():
    requests = load_trace(DATA / "traces" / "AzureLLMInferenceTrace_conv.csv")
    assert len(requests) == 19366
    assert requests[0].arrival_s == 0.0
    assert requests[0].prompt_tokens == 374
    assert requests[0].output_tokens == 44
    assert requests[1].arrival_s == pytest.approx(4.314579, abs=1e-6)
    assert requests[-1].arrival_s == pytest.approx(3501.722, abs=0.01)


def test_timestamp_uses_first_26_characters(tmp_path):
    path = write(
        tmp_path, "2023-11-16 18:15:46.6805900,10,5\n2023-11-16 18:15:47.1805909,20,6\n"
    )
    requests = load_trace(path)
    assert requests[1].arrival_s == pytest.approx(0.5, abs=1e-6)


def test_compression_divides_arrivals(tmp_path):
    path = write(
        tmp_path, "2023-11-16 18:00:00.000000,10,5\n2023-11-16 18:00:10.000000,20,6\n"
    )
    arrivals = list(replay(load_trace(path), 4.0, loop=False))
    assert arrivals == [(0.0, 10, 5), (2.5, 20, 6)]


def test_replay_loops_after_one_period(tmp_path):
    # Given two requests 10 s apart: span 10 s plus mean gap 10 s
    path = write(
        tmp_path, "2023-11-16 18:00:00.000000,10,5\n2023-11-16 18:00:10.000000,20,6\n"
    )
    requests = load_trace(path)
    # When the replay runs past the end at compression 2
    stream = replay(requests, 2.0)
    arrivals = [next(stream) for _ in range(4)]
    # Then the second loop starts 20 s / 2 = 10 s after the first
    assert trace_period_s(requests) == 20.0
    assert [a[0] for a in arrivals] == [0.0, 5.0, 10.0, 15.0]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("yesterday,10,5\n", "row 3: invalid TIMESTAMP"),
        (
            "2023-11-16 18:00:01.000000,ten,5\n",
            "row 3: ContextTokens must be an integer",
        ),
        ("2023-11-16 18:00:01.000000,10,0\n", "row 3: GeneratedTokens must be >= 1"),
        ("2023-11-16 17:00:00.000000,10,5\n", "row 3: TIMESTAMP .* earlier"),
    ],
)
def test_bad_row_names_file_and_row(tmp_path, row, message):
    path = write(tmp_path, "2023-11-16 18:00:00.000000,10,5\n" + row)
    with pytest.raises(TraceError, match=message) as error:
        load_trace(path)
    assert str(path) in str(error.value)


def test_missing_column_is_reported(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("TIMESTAMP,ContextTokens\n2023-11-16 18:00:00.000000,10\n")
    with pytest.raises(TraceError, match="missing column"):
        load_trace(path)


def test_empty_trace_is_reported(tmp_path):
    with pytest.raises(TraceError, match="no requests"):
        load_trace(write(tmp_path, ""))


def test_compression_must_be_positive():
    with pytest.raises(ValueError, match="compression"):
        next(replay([], 0.0))
