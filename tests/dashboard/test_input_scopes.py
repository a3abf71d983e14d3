"""Each input of a decision names whether it is the model's or the variant's."""

from __future__ import annotations

from wva_web.dashboard import explain

ANALYSIS = {
    "model": {
        "path": "slo",
        "required_rps": 20.0,
        "supply_rps": 23.458,
        "spare_rps": 3.458,
        "demand": {"observed_arrival_rate": 18.0, "arrival_rate": 19.0},
    },
    "inputs": {"capacity_rps": 0.279, "on_the_way": 2},
    "free_gpus": 1,
}


def labels() -> dict[str, str]:
    return {fact.key: fact.label for fact in explain.input_facts(ANALYSIS)}


def texts() -> dict[str, str]:
    return {fact.key: fact.text for fact in explain.input_facts(ANALYSIS)}


def test_capacity_label_names_variant() -> None:
    assert labels()["capacity_rps"] == "this variant: capacity per replica"


def test_supply_label_sums_over_variants() -> None:
    assert labels()["supply_rps"].startswith("model: supply, the sum over its variants")


def test_every_input_names_scope() -> None:
    for key, label in labels().items():
        scoped = label.startswith(("model:", "this variant"))
        assert scoped, f"input {key} has no scope in its label {label!r}"


def test_inputs_carry_units() -> None:
    assert texts()["capacity_rps"] == "0.279 req/s"
    assert texts()["supply_rps"] == "23.458 req/s"
    assert texts()["on_the_way"] == "2 replicas"
    assert texts()["free_gpus"] == "1 GPU"
