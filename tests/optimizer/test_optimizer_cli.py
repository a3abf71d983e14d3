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
    assert len(sorted(EXAMPLES.glob("*.json"))) == 2


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
    state["policy"] = "wva"
    result = decide_json(state)
    assert result.returncode == 2
    assert "policy: unsupported policy 'wva'" in result.stderr


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
