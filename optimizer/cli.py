"""Command line: `python -m optimizer decide --input STATE.json`.

Prints the decisions of the `wva`, `wva-v1` or `hpa` policy as JSON. Exit
status 0 on success, 2 on an invalid or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from optimizer.hpa import HpaResult
from optimizer.policy_wva import WvaResult, decide_wva
from optimizer.saturation import ModelAnalysis, VariantInput, analyse_model
from optimizer.state import (
    POLICIES,
    ClusterState,
    InputError,
    VariantState,
    hpa_for_variant,
    parse_state,
)

__all__ = ["decide", "hpa_for_variant", "main"]

EXIT_INVALID_INPUT = 2


def _saturation_input(variant: VariantState) -> VariantInput:
    return VariantInput(
        name=variant.name,
        usd_per_replica_hour=variant.usd_per_replica_hour,
        current_replicas=variant.current_replicas,
        ready_replicas=variant.ready_replicas,
        min_replicas=variant.min_replicas,
        max_replicas=variant.max_replicas,
        replicas=variant.replicas,
        pending_replicas=variant.pending_replicas,
        desired_replicas=variant.desired_replicas,
    )


def _analyse_models(state: ClusterState) -> dict[str, ModelAnalysis]:
    by_model: dict[str, list[VariantState]] = {}
    for variant in state.variants:
        by_model.setdefault(variant.model, []).append(variant)
    return {
        model: analyse_model(
            [_saturation_input(v) for v in variants], state.saturation_for(model)
        )
        for model, variants in by_model.items()
    }


def _hpa_fields(result: HpaResult) -> dict[str, Any]:
    return {
        "hpa_target_replicas": result.desired_replicas,
        "hpa_reasons": list(result.reasons),
        "hpa_recommendations": [
            {"at_s": at_s, "replicas": replicas}
            for at_s, replicas in result.recommendations
        ],
    }


def _model_summary(analysis: ModelAnalysis) -> dict[str, Any]:
    return {
        "spare_kv": analysis.spare_kv,
        "spare_queue": analysis.spare_queue,
        "saturated": list(analysis.saturated),
        "not_reporting": list(analysis.not_reporting),
        "pending": list(analysis.pending),
        "reasons": list(analysis.reasons),
    }


def _finite(value: Any) -> Any:
    """Replace NaN and infinity by None, inside lists and dicts too."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _wva_output(state: ClusterState, result: WvaResult) -> dict[str, Any]:
    decisions: list[dict[str, Any]] = []
    for decision, variant in zip(result.decisions, state.variants, strict=True):
        row: dict[str, Any] = {
            "variant": decision.variant,
            "model": decision.model,
            "current_replicas": decision.current_replicas,
            "target_replicas": decision.target_replicas,
            "reasons": list(decision.reasons),
            "bound_by": decision.bound_by,
            "message": decision.message,
            "victim_pod": decision.victim_pod,
            "victim_pods": list(decision.victim_pods),
            "degraded": decision.degraded,
            "inputs": _finite(dict(decision.inputs)),
        }
        row.update(_hpa_fields(decision.hpa or hpa_for_variant(state, variant)))
        decisions.append(row)
    return {
        "policy": "wva",
        "solver": result.solver,
        "success": result.success,
        "status": result.status,
        "message": result.message,
        "decisions": decisions,
        "unserved": {model: rate for model, rate in result.unserved.items()},
        "models": _finite({m: dict(v) for m, v in result.models.items()}),
    }


def decide(state: ClusterState) -> dict[str, Any]:
    """Run the state's policy and build the JSON-ready output."""
    if state.policy == "wva":
        return _wva_output(state, decide_wva(state))
    analyses = _analyse_models(state) if state.policy == "wva-v1" else {}
    decisions: list[dict[str, Any]] = []
    for variant in state.variants:
        hpa = hpa_for_variant(state, variant)
        row: dict[str, Any] = {
            "variant": variant.name,
            "model": variant.model,
            "current_replicas": variant.current_replicas,
        }
        if state.policy == "wva-v1":
            decision = next(
                d
                for d in analyses[variant.model].decisions
                if d.variant == variant.name
            )
            row.update(
                target_replicas=decision.target_replicas,
                reasons=list(decision.reasons),
                bound_by=decision.bound_by,
                message=decision.message,
                victim_pod=decision.victim_pod,
            )
        else:
            unknown = hpa.desired_replicas is None
            row.update(
                target_replicas=variant.current_replicas
                if unknown
                else hpa.desired_replicas,
                reasons=list(hpa.reasons),
                bound_by=hpa.bound_by,
                message="",
                victim_pod=None,
            )
        row.update(_hpa_fields(hpa))
        decisions.append(row)
    output: dict[str, Any] = {
        "policy": state.policy,
        "solver": None,
        "decisions": decisions,
        "unserved": {},
    }
    if analyses:
        output["models"] = {name: _model_summary(a) for name, a in analyses.items()}
    return output


def _read_document(path: str) -> Any:
    try:
        if path == "-":
            return json.load(sys.stdin)
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as err:
        raise InputError("--input", f"cannot read {path!r}: {err.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError("--input", f"{path!r} is not valid JSON: {err}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m optimizer",
        description="Decide replica counts for a cluster state read as JSON.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    decide_parser = commands.add_parser(
        "decide", help="print the decisions of one policy for a state, as JSON"
    )
    decide_parser.add_argument(
        "--input", required=True, help="path of the state JSON file, or - for stdin"
    )
    decide_parser.add_argument(
        "--policy", choices=POLICIES, help="policy to run; overrides the state's policy"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status."""
    args = _parser().parse_args(argv)
    try:
        state = parse_state(_read_document(args.input), args.policy)
    except InputError as err:
        print(f"invalid input: {err}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    output = decide(state)
    try:
        json.dump(output, sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (e.g. `head`) closed the pipe early. Point stdout at
        # /dev/null so that the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return 0
