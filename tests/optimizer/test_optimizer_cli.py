"""`python -m optimizer decide` on example and invalid states."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "optimizer" / "examples"


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "optimizer", "decide", *args],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def decide_json(state: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("--input", "-", *args, stdin=json.dumps(state))


def by_variant(output: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["variant"]: row for row in output["decisions"]}


def minimal_state(**variant_fields: Any) -> dict[str, Any]:
    variant: dict[str, Any] = {
        "name": "v1",
        "model": "m",
        "accelerator": "L40S",
        "min_replicas": 1,
        "max_replicas": 4,
        "current_replicas": 2,
        "replicas": [
            {"pod": "a1", "kv_cache_usage": 0.2, "num_requests_waiting": 0},
            {"pod": "a2", "kv_cache_usage": 0.2, "num_requests_waiting": 0},
        ],
    }
    variant.update(variant_fields)
    return {
        "policy": "wva-v1",
        "accelerators": [{"name": "L40S", "usd_per_gpu_hour": 1.86}],
        "variants": [variant],
    }


def test_example_files_exist() -> None:
    assert len(sorted(EXAMPLES.glob("*.json"))) == 3


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_example_runs(path: Path) -> None:
    result = run_cli("--input", str(path))
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["unserved"] == {}
    assert len(output["decisions"]) == len(json.loads(path.read_text())["variants"])


def test_wva_v1_example_decisions() -> None:
    result = run_cli("--input", str(EXAMPLES / "wva-v1-two-models.json"))
    rows = by_variant(json.loads(result.stdout))
    assert rows["llama-8b-h100"]["target_replicas"] == 1
    assert rows["llama-8b-h100"]["victim_pod"] == "a1"
    assert rows["llama-8b-a100"]["target_replicas"] == 3
    assert rows["qwen-7b-l40s"]["target_replicas"] == 3
    assert rows["qwen-7b-l40s"]["reasons"] == ["scale_up:spare_kv"]


def test_hpa_example_decisions() -> None:
    result = run_cli("--input", str(EXAMPLES / "hpa-failed-kv-query.json"))
    rows = by_variant(json.loads(result.stdout))
    assert rows["llama-8b-h100"]["target_replicas"] == 6
    assert "invalid_metric:kv" in rows["llama-8b-h100"]["reasons"]
    assert rows["llama-70b-h100"]["target_replicas"] == 6


def test_policy_option_overrides_state() -> None:
    result = decide_json(minimal_state(), "--policy", "hpa")
    assert json.loads(result.stdout)["policy"] == "hpa"


def test_min_above_max_rejected() -> None:
    result = decide_json(minimal_state(min_replicas=3, max_replicas=2))
    assert result.returncode == 2
    assert "variants[0].min_replicas: must not be above max_replicas (3 > 2)" in (
        result.stderr
    )


def test_unknown_accelerator_rejected() -> None:
    result = decide_json(minimal_state(accelerator="B200"))
    assert result.returncode == 2
    assert "variants[0].accelerator: unknown accelerator 'B200'" in result.stderr


def test_string_metric_value_rejected() -> None:
    state = minimal_state()
    state["variants"][0]["replicas"][1]["kv_cache_usage"] = "0.2"
    result = decide_json(state)
    assert result.returncode == 2
    assert "variants[0].replicas[1].kv_cache_usage" in result.stderr


def test_duplicate_pod_rejected() -> None:
    state = minimal_state()
    state["variants"][0]["replicas"][1]["pod"] = "a1"
    result = decide_json(state)
    assert result.returncode == 2
    assert "variants[0].replicas[1].pod: duplicate pod 'a1'" in result.stderr


def test_unsupported_policy_rejected() -> None:
    state = minimal_state()
    state["policy"] = "wva-v3"
    result = decide_json(state)
    assert result.returncode == 2
    assert "policy: unsupported policy 'wva-v3'" in result.stderr


def test_invalid_json_rejected() -> None:
    result = run_cli("--input", "-", stdin="{not json")
    assert result.returncode == 2
    assert "--input" in result.stderr


def test_unreadable_file_rejected(tmp_path: Path) -> None:
    result = run_cli("--input", str(tmp_path / "absent.json"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_nan_sample_holds_and_output_is_strict_json() -> None:
    # json.loads accepts the NaN literal; the replica then counts as not reporting
    text = json.dumps(minimal_state()).replace('"kv_cache_usage": 0.2', "NaN_", 1)
    text = text.replace("NaN_", '"kv_cache_usage": NaN')
    result = run_cli("--input", "-", stdin=text)
    assert result.returncode == 0, result.stderr
    assert "NaN" not in result.stdout
    row = json.loads(result.stdout)["decisions"][0]
    assert row["target_replicas"] == 2
    assert row["reasons"][0] == "missing_metrics:a1"


def test_null_sample_gives_unknown_hpa() -> None:
    state = minimal_state()
    for replica in state["variants"][0]["replicas"]:
        replica["kv_cache_usage"] = None
        replica["num_requests_waiting"] = None
    result = decide_json(state, "--policy", "hpa")
    row = json.loads(result.stdout)["decisions"][0]
    assert row["hpa_target_replicas"] is None
    assert row["target_replicas"] == 2
    assert row["bound_by"] == "missing_data"


def test_unknown_fields_ignored() -> None:
    state = minimal_state(colour="blue")
    state["extra"] = {"anything": 1}
    result = decide_json(state)
    assert result.returncode == 0, result.stderr


def test_wva_example_decisions() -> None:
    result = run_cli("--input", str(EXAMPLES / "wva-slo-two-models.json"))
    output = json.loads(result.stdout)
    rows = by_variant(output)
    assert output["policy"] == "wva"
    assert output["solver"] == "milp"
    assert output["success"] is True
    assert rows["llama-8b-h100"]["target_replicas"] == 4
    assert rows["llama-8b-a100"]["target_replicas"] == 3
    assert rows["qwen-7b-l40s"]["target_replicas"] == 3
    assert rows["qwen-7b-l40s"]["degraded"] is True
    assert rows["qwen-7b-a100"]["target_replicas"] == 1
    assert "no_free_gpu:L40S" in rows["qwen-7b-a100"]["reasons"]


def test_wva_policy_option_on_wva_v1_state() -> None:
    result = run_cli(
        "--input", str(EXAMPLES / "wva-v1-two-models.json"), "--policy", "wva"
    )
    output = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr
    assert output["solver"] is None
    assert "insufficient_data" in output["decisions"][0]["reasons"]


def test_other_policies_report_no_solver() -> None:
    result = decide_json(minimal_state())
    assert json.loads(result.stdout)["solver"] is None


def test_engines_aggregate_into_pod() -> None:
    state = minimal_state()
    state["policy"] = "wva"
    state["variants"][0]["replicas"][0] = {
        "pod": "a1",
        "engines": [
            {
                "kv_cache_usage": 0.9,
                "num_requests_waiting": 1,
                "num_requests_running": 4,
            },
            {
                "kv_cache_usage": 0.1,
                "num_requests_waiting": 6,
                "num_requests_running": 5,
            },
        ],
    }
    result = decide_json(state)
    row = json.loads(result.stdout)["decisions"][0]
    # KV 0.9 on one engine saturates the pod although the mean is 0.5
    assert "saturated:a1" in row["reasons"]
    assert row["target_replicas"] == 2


def test_engine_without_sample_marks_pod_missing() -> None:
    state = minimal_state()
    state["policy"] = "wva"
    state["variants"][0]["replicas"][0] = {
        "pod": "a1",
        "engines": [
            {"kv_cache_usage": 0.1, "num_requests_waiting": 0},
            {"kv_cache_usage": None, "num_requests_waiting": 0},
        ],
    }
    row = json.loads(decide_json(state).stdout)["decisions"][0]
    assert row["target_replicas"] == 2
    assert row["degraded"] is True


INVALID_WVA_FIELDS = [
    (
        ["variants", 0, "profile"],
        {"alpha": 7.0, "beta": 0.027},
        "variants[0].profile.gamma: is required when alpha is set",
    ),
    (["variants", 0, "role"], "mixed", "variants[0].role: must be one of"),
    (
        ["variants", 0, "scale_down_limit"],
        {"replicas": 1, "period_s": 0},
        "variants[0].scale_down_limit.period_s: must be > 0",
    ),
    (
        ["variants", 0, "scale_events"],
        [{"at_s": 1, "from": 2}],
        "variants[0].scale_events[0].to: is required",
    ),
    (
        ["service_classes"],
        [{"name": "c", "ttft_ms": 0, "itl_ms": 20}],
        "service_classes[0].ttft_ms: must be > 0",
    ),
    (
        ["demand"],
        {"m": {"arrival_rate": -1}},
        "demand.m.arrival_rate: must be >= 0",
    ),
    (
        ["wva"],
        {"scale_up_headroom": 85},
        "wva.scale_up_headroom: must be > 0 and at most 1",
    ),
    (["wva"], {"solver": "cplex"}, "wva.solver: must be auto, milp or greedy"),
]


@pytest.mark.parametrize(("path", "value", "message"), INVALID_WVA_FIELDS)
def test_invalid_wva_field_rejected(path: list[Any], value: Any, message: str) -> None:
    state = minimal_state()
    state["policy"] = "wva"
    target: Any = state
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    result = decide_json(state)
    assert result.returncode == 2
    assert message in result.stderr


def test_state_without_policy_runs_wva() -> None:
    state = minimal_state()
    del state["policy"]
    result = decide_json(state)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["policy"] == "wva"


def test_closed_pipe_exits_quietly() -> None:
    # `decide ... | head -c 0`: the reader closes the pipe before any output.
    state = json.dumps(minimal_state())
    with subprocess.Popen(
        [sys.executable, "-m", "optimizer", "decide", "--input", "-"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdout.close()
        process.stdin.write(state)
        process.stdin.close()
        stderr = process.stderr.read() if process.stderr else ""
        code = process.wait(timeout=60)
    assert "Traceback" not in stderr
    assert code == 0
