"""`python -m fleetsim compare`: policies, accounting and the command line."""

import errno
import json
from pathlib import Path

import pytest

from fleetsim.__main__ import main
from fleetsim.compare import (
    POLICY_NAMES,
    CompareCluster,
    CompareOptions,
    PolicyRun,
    load_setup,
    run_comparison,
)
from fleetsim.engine import EngineConfig
from fleetsim.policies import (
    Demand,
    Observation,
    PolicyContext,
    ReplicaView,
    ServiceClassSpec,
    VariantView,
    peak_rate,
)
from fleetsim.policies_wva import WvaPolicy, WvaV1Policy
from fleetsim.replica import load_accelerators
from fleetsim.trace import TraceRequest, load_named_trace

DATA = Path(__file__).resolve().parents[2] / "data"
# Benchmarked capacities are given so that the tests skip the benchmark.
CAPACITIES = {"h100": 16.0, "l40s": 2.5}
REQUIRED_FIELDS = (
    "goodput_rps",
    "goodput_tokens_per_s",
    "failed_requests",
    "failures_by_cause",
    "slo_attainment",
    "ttft_p99_s",
    "itl_p99_s",
    "gpu_hours",
    "usd",
    "kwh",
    "replica_changes",
    "reversals",
)


def fleet_file(tmp_path: Path, max_model_len: int = 131072) -> Path:
    document = {
        "namespace": "llm",
        "model": "m",
        "service_classes": [
            {"name": "interactive", "priority": 1, "ttft_ms": 2000, "itl_ms": 100},
            {"name": "batch", "priority": 2, "ttft_ms": 30000, "itl_ms": 250},
        ],
        "model_service_class": "interactive",
        "batch_fraction": 0.2,
        "accelerators": {
            "H100-80GB": {"node_label_value": "h100", "gpus": 4},
            "L40S": {"node_label_value": "l40s", "gpus": 4},
        },
        "variants": [
            {"name": "h100", "accelerator": "H100-80GB", "replicas": 1,
             "min_replicas": 0, "max_replicas": 4},
            {"name": "l40s", "accelerator": "L40S", "replicas": 1,
             "min_replicas": 0, "max_replicas": 4},
        ],
        "engine": {"max_num_seqs": 256, "max_model_len": max_model_len,
                   "max_num_batched_tokens": 2048, "block_size": 16},
    }  # fmt: skip
    path = tmp_path / f"fleet-{max_model_len}.json"
    path.write_text(json.dumps(document))
    return path


def options(tmp_path: Path, **changes) -> CompareOptions:
    values = {
        "trace": "azure-conv",
        "scale": 2.0,
        "scale_mode": "compress",
        "fleet": fleet_file(tmp_path),
        "policies": ("hpa-queue", "wva"),
        "seed": 3,
        "duration_s": 120.0,
        "replica_capacity_rps": CAPACITIES,
    }
    values.update(changes)
    return CompareOptions(**values)


def test_same_seed_gives_same_result(tmp_path):
    first = run_comparison(options(tmp_path))
    again = run_comparison(options(tmp_path))
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_each_policy_runs_on_a_short_slice(tmp_path, policy):
    result = run_comparison(options(tmp_path, policies=(policy,)))
    outcome = result["policies"][policy]
    assert outcome["requests"] == result["requests"]
    assert outcome["requests"] > 0
    assert outcome["good_requests"] > 0
    assert outcome["usd"] > 0


def test_compress_replays_trace_faster(tmp_path):
    trace = load_named_trace("azure-conv")
    expected = sum(1 for r in trace if r.arrival_s / 2.0 < 120.0)
    result = run_comparison(options(tmp_path, policies=("static-peak",)))
    assert result["requests"] == expected
    assert result["duration_s"] == 120.0


def test_superpose_doubles_requests_of_the_slice(tmp_path):
    trace = load_named_trace("azure-conv")
    plain = sum(1 for r in trace if r.arrival_s < 600.0)
    result = run_comparison(
        options(
            tmp_path,
            scale_mode="superpose",
            duration_s=600.0,
            policies=("static-peak",),
        )
    )
    assert result["duration_s"] == 600.0
    assert 1.6 * plain < result["requests"] < 2.4 * plain


def test_too_long_requests_are_counted(tmp_path):
    fleet = fleet_file(tmp_path, max_model_len=1024)
    trace = load_named_trace("azure-conv")
    too_long = sum(
        1
        for r in trace
        if r.arrival_s / 2.0 < 120.0 and r.prompt_tokens + r.output_tokens > 1024
    )
    result = run_comparison(options(tmp_path, fleet=fleet, policies=("hpa-kv",)))
    failures = result["policies"]["hpa-kv"]["failures_by_cause"]
    assert too_long > 0
    assert failures["too_long"] == too_long


def test_cli_writes_json_fields(tmp_path, capsys):
    out = tmp_path / "result.json"
    status = main(
        [
            "compare", "--trace", "azure-code", "--scale", "1",
            "--scale-mode", "compress", "--fleet", str(fleet_file(tmp_path)),
            "--policies", "hpa-kv,oracle", "--seed", "2", "--duration", "60",
            "--json", str(out), "--plots", str(tmp_path / "plots"),
        ]
    )  # fmt: skip
    assert status == 0
    result = json.loads(out.read_text())
    for policy in ("hpa-kv", "oracle"):
        for field in REQUIRED_FIELDS:
            assert field in result["policies"][policy], (policy, field)
    assert "goodput_rps" in capsys.readouterr().out
    assert (tmp_path / "plots" / "replicas.html").is_file()


def test_cli_makes_json_folder(tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "result.json"
    status = main(
        [
            "compare", "--trace", "azure-code", "--scale", "1",
            "--fleet", str(fleet_file(tmp_path)), "--policies", "oracle",
            "--duration", "60", "--json", str(out),
        ]
    )  # fmt: skip
    assert status == 0
    assert "oracle" in json.loads(out.read_text())["policies"]
    assert f"wrote {out}" in capsys.readouterr().out
    assert not out.with_name("result.json.partial").exists()


def test_cli_unwritable_folder_fails_first(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "compare", "--trace", "azure-code", "--policies", "oracle",
                "--json", str(blocker / "result.json"),
            ]
        )  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr()
    assert f"--json: {blocker} is a file, not a folder" in err.err
    assert "goodput_rps" not in err.out


@pytest.mark.parametrize("option", ["--plots", "--images"])
def test_cli_folder_that_is_file_exit_2(tmp_path, capsys, monkeypatch, option):
    monkeypatch.setenv("BROWSER_PATH", "/bin/true")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "compare", "--trace", "azure-code", "--policies", "oracle",
                option, str(blocker / "sub"),
            ]
        )  # fmt: skip
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert f"{option}: {blocker} is a file, not a folder" in captured.err
    assert "goodput_rps" not in captured.out


def test_cli_json_that_is_folder_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--trace", "azure-code", "--json", str(tmp_path)])
    assert exit_info.value.code == 2
    assert f"--json: {tmp_path} is a folder, not a file" in capsys.readouterr().err


def make_folder_read_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make opening a file in `folder` for writing fail with EACCES.

    Permission bits do not stop root, so Path.open is patched. Path.write_text
    and the probe of the output folders both go through it.
    """
    original_open = Path.open

    def guarded_open(self, mode="r", *args, **kwargs):
        if self.parent == folder and set(mode) & set("wxa+"):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return original_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", guarded_open)


@pytest.mark.parametrize("option", ["--json", "--plots", "--images"])
def test_cli_read_only_folder_fails_first(tmp_path, capsys, monkeypatch, option):
    # find_browser accepts any executable; the run must stop before rendering.
    monkeypatch.setenv("BROWSER_PATH", "/bin/true")
    folder = tmp_path / "read-only"
    folder.mkdir()
    make_folder_read_only(monkeypatch, folder)
    target = folder / "result.json" if option == "--json" else folder
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "compare", "--trace", "azure-code", "--scale", "1",
                "--fleet", str(fleet_file(tmp_path)), "--policies", "oracle",
                "--duration", "60", option, str(target),
            ]
        )  # fmt: skip
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert f"{option}: cannot write to folder {folder}" in captured.err
    assert "Permission denied" in captured.err
    assert "goodput_rps" not in captured.out


def test_cli_plots_write_failure_exit_1(tmp_path, capsys):
    plots = tmp_path / "plots"
    # A folder where a file should go: the rename onto it fails, even for root.
    (plots / "replicas.html").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "compare", "--trace", "azure-code", "--scale", "1",
                "--fleet", str(fleet_file(tmp_path)), "--policies", "oracle",
                "--duration", "60", "--plots", str(plots),
            ]
        )  # fmt: skip
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert f"--plots: cannot write {plots / 'replicas.html'}" in captured.err
    assert "Traceback" not in captured.err
    assert "goodput_rps" in captured.out
    assert not [path for path in plots.iterdir() if path.name.endswith(".tmp")]


@pytest.mark.parametrize("option", ["--json", "--plots", "--images"])
def test_cli_empty_path_exit_2(capsys, option):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--trace", "azure-code", "--policies", "oracle", option, ""])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert f"{option}: empty path" in captured.err
    assert "goodput_rps" not in captured.out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--trace", "nope"], "unknown trace 'nope'"),
        (
            ["--trace", "azure-conv", "--policies", "hpa-cpu"],
            "unknown policy 'hpa-cpu'",
        ),
        (["--trace", "azure-conv", "--scale", "0"], "--scale must be > 0, got 0.0"),
        (["--trace", "azure-conv", "--scale", "-2"], "--scale must be > 0, got -2.0"),
        (["--trace", "azure-conv", "--fleet", "/missing.json"], "/missing.json"),
        (["--trace", "azure-conv", "--scale-mode", "zoom"], "'zoom'"),
        (
            ["--trace", "azure-conv", "--policies", "wva@H100-80GB,wva@H100-80GB"],
            "policy 'wva@H100-80GB' is listed twice",
        ),
        (
            ["--trace", "azure-conv", "--policies", "hpa-kv,hpa-kv=0.6"],
            "policy 'hpa-kv=0.6' is the same as 'hpa-kv'",
        ),
        (
            ["--trace", "azure-conv", "--policies", "hpa-queue=2,hpa-queue=2.0"],
            "policy 'hpa-queue=2.0' is the same as 'hpa-queue=2'",
        ),
        (
            ["--trace", "azure-conv", "--policies", "wva@"],
            "empty accelerator in 'wva@'",
        ),
        (
            ["--trace", "azure-conv", "--policies", "hpa-kv=@H100-80GB"],
            "empty target in 'hpa-kv=@H100-80GB'",
        ),
        (
            ["--trace", "azure-conv", "--policies", "wva="],
            "policy 'wva' takes no target, got 'wva='",
        ),
    ],
)
def test_bad_arguments_exit_2(arguments, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", *arguments])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_policy_with_comma_rejected():
    # Only the Python API can pass one, with a custom accelerators file.
    options = CompareOptions(policies=("wva@A,B",))
    with pytest.raises(ValueError, match="'wva@A,B': a policy cannot contain a comma"):
        options.validate()


def test_same_policy_on_two_accelerators_accepted():
    CompareOptions(policies=("wva@H100-80GB", "wva@L40S", "wva")).validate()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "must contain a JSON object, not list"),
        ("{not json", "is not valid JSON"),
        ('{"variants": []}', "is missing a field"),
    ],
)
def test_bad_fleet_file_exit_2(tmp_path, content, message, capsys):
    fleet = tmp_path / "fleet.json"
    fleet.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--trace", "azure-conv", "--fleet", str(fleet)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"fleet file {fleet}" in err
    assert message in err


def test_fleet_without_variants_exit_2(tmp_path, capsys):
    fleet = json.loads((DATA / "compare_fleet.json").read_text())
    fleet["variants"] = []
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(fleet))
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--trace", "azure-conv", "--fleet", str(path)])
    assert exit_info.value.code == 2
    assert "'variants' is empty" in capsys.readouterr().err


# -- a starting replica is capacity on the way ------------------------------


def context() -> PolicyContext:
    profiles = load_accelerators(DATA / "accelerators.csv")
    return PolicyContext(
        variants=(),
        profiles=profiles,
        power={},
        gpus={"L40S": 8},
        sizing_class=ServiceClassSpec("interactive", 1, 2000.0, 100.0),
        startup_delay_s=120.0,
        control_period_s=30.0,
    )


def l40s_observation(
    replicas: tuple[ReplicaView, ...],
    completion_rate: float,
    demand: Demand,
    scale_events: tuple[tuple[float, str, int, int], ...] = (),
) -> Observation:
    """Return an observation of one L40S variant with 6 free L40S GPUs at 600 s."""
    variant = VariantView(
        name="l40s",
        accelerator="L40S",
        gpus_per_replica=1,
        usd_per_gpu_hour=1.86,
        min_replicas=0,
        max_replicas=8,
        spec_replicas=len(replicas),
        replicas=replicas,
        kv_tokens=191000,
        engine=EngineConfig(),
        completion_rate=completion_rate,
    )
    return Observation(
        now_s=600.0,
        variants=(variant,),
        free_gpus={"L40S": 6},
        demand=demand,
        scale_events=scale_events,
    )


def saturated_with_one_starting(demand: Demand | None = None) -> Observation:
    replicas = (
        ReplicaView("l40s-a", "Running", True, 0.95, 12.0, 200.0, 150000, 0.0),
        ReplicaView("l40s-b", "Pending", False, None, None, None, 0, 20.0),
    )
    return l40s_observation(
        replicas,
        completion_rate=3.0,
        demand=demand or Demand(3.5, 3.0, None, None),
        scale_events=((570.0, "l40s", 1, 2),),
    )


def test_wva_v1_waits_for_starting_replica():
    decisions = WvaV1Policy(context()).decide(saturated_with_one_starting())
    assert decisions["l40s"].target == 2


def test_wva_waits_for_starting_replica():
    decisions = WvaPolicy(context()).decide(saturated_with_one_starting())
    assert decisions["l40s"].target == 2


def test_wva_counts_starting_replica_in_slo_sizing():
    policy = WvaPolicy(context())
    demand = Demand(2.5, 2.0, 1155.0, 211.0)
    decisions = policy.decide(saturated_with_one_starting(demand))
    assert "sized_by_slo" in decisions["l40s"].reasons
    assert decisions["l40s"].target == 2


# -- scale-down: draining keeps requests, the ReplicaSet path loses them ----


def busy_cluster(tmp_path: Path):
    from fleetsim.compare import CompareCluster, load_setup

    setup = load_setup(fleet_file(tmp_path))
    profiles = load_accelerators(DATA / "accelerators.csv")
    cluster = CompareCluster(
        setup.spec,
        profiles,
        startup_delay_s=0.0,
        seed=1,
        max_waiting=128,
        grace_s={"h100": 600.0, "l40s": 600.0},
    )
    requests = [cluster.route(1000, 200)[0] for _ in range(6)]
    cluster.advance_to(0.5)
    return cluster, requests


def test_drained_replica_finishes_its_requests(tmp_path):
    cluster, requests = busy_cluster(tmp_path)
    victim = cluster.counted_pods("l40s")[0].name
    cluster.drain_to("l40s", 0, (victim,))
    assert cluster.route(1000, 200)[0] is not None
    for second in range(1, 60):
        cluster.advance_to(0.5 + second)
        cluster.finish_drains()
    assert all(r.state.value == "done" for r in requests)
    assert cluster.deployments["l40s"].lost == 0
    assert cluster.pods("l40s") == []


def test_scale_down_without_drain_loses_requests(tmp_path):
    cluster, requests = busy_cluster(tmp_path)
    cluster.scale("l40s", 0)
    assert cluster.deployments["l40s"].lost > 0
    assert any(r.state.value == "lost" for r in requests)


def test_draining_replica_gets_no_requests(tmp_path):
    cluster, _ = busy_cluster(tmp_path)
    victim = cluster.counted_pods("l40s")[0]
    cluster.drain_to("l40s", 0, (victim.name,))
    queued = len(victim.engine.running) + victim.engine.n_waiting
    for _ in range(20):
        cluster.route(500, 50)
    assert len(victim.engine.running) + victim.engine.n_waiting <= queued


# -- requests rejected at the router still count as demand ------------------


def test_gateway_rate_counts_rejected_requests(tmp_path):
    setup = load_setup(fleet_file(tmp_path))
    cluster = CompareCluster(
        setup.spec,
        load_accelerators(DATA / "accelerators.csv"),
        startup_delay_s=0.0,
        seed=1,
        max_waiting=2,
        grace_s={},
    )
    run = PolicyRun(None, cluster, setup, ["h100", "l40s"])
    run.measure_demand()
    rejected = 0
    for step in range(600):
        cluster.advance_to(step * 0.05)
        request, _ = cluster.route(4000, 400)
        rejected += request is None
    cluster.advance_to(30.0)
    demand, _ = run.measure_demand()
    assert rejected > 300
    assert demand.gateway_arrival_rate == pytest.approx(600 / 30.0)
    assert demand.arrival_rate < 600 / 30.0 - rejected / 30.0 + 1.0


def saturated_pair(gateway_rate: float | None) -> Observation:
    replicas = tuple(
        ReplicaView(f"l40s-{n}", "Running", True, 0.95, 12.0, 200.0, 150000, 0.0)
        for n in "ab"
    )
    demand = Demand(5.0, 5.0, 1155.0, 211.0, gateway_arrival_rate=gateway_rate)
    return l40s_observation(replicas, completion_rate=5.0, demand=demand)


def test_wva_sizes_for_gateway_rejections():
    """Every replica saturated, 15 req/s at the gateway, 5 req/s reaching pods.

    Sized on the pods' counters, `wva` grows the two replicas to at most
    four. The gateway's count sizes the fleet for the whole load at once.
    """
    pods_only = WvaPolicy(context()).decide(saturated_pair(None))
    with_gateway = WvaPolicy(context()).decide(saturated_pair(15.0))
    assert pods_only["l40s"].target <= 4
    assert with_gateway["l40s"].target >= 7


def test_wva_keeps_higher_pod_rate():
    lower = WvaPolicy(context()).decide(saturated_pair(1.0))
    absent = WvaPolicy(context()).decide(saturated_pair(None))
    assert lower["l40s"].target == absent["l40s"].target


def test_comparison_logs_no_lost_requests(tmp_path, caplog):
    cluster, _ = busy_cluster(tmp_path)
    with caplog.at_level("INFO", logger="fleetsim.engine"):
        cluster.scale("l40s", 0)
        cluster.scale("h100", 0)
    assert "removed while busy" not in caplog.text


def test_wva_settles_at_low_load():
    """Low load on the default fleet: `wva` moves to its cheapest variant once.

    A starting replica with a node is the new half of that move. Removed as
    spare while the old replicas bridged the move, it came back a minute
    later, again and again.
    """
    result = run_comparison(
        CompareOptions(
            trace="azure-conv",
            scale=2.0,
            scale_mode="superpose",
            fleet=DATA / "compare_fleet.json",
            policies=("wva",),
            seed=1,
            duration_s=600.0,
        )
    )
    outcome = result["policies"]["wva"]
    assert outcome["reversals"] == 0
    assert outcome["replica_changes"] <= 6


def test_peak_rate_cut_at_trace_end():
    # Two requests per second for the last 30 s of a 100 s trace.
    trace = [TraceRequest(70.0 + n / 2.0, 100, 10) for n in range(60)]
    trace.append(TraceRequest(0.0, 100, 10))

    assert peak_rate(trace, 60.0, 100.0) == pytest.approx(1.0)
    assert peak_rate(trace, 60.0, 100.0, trace_end_s=99.5) == pytest.approx(2.0, 0.05)
