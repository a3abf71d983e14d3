"""A list of reason codes reads in plain words, with the codes one click away."""

from __future__ import annotations

from tests.dashboard.conftest import World
from wva_web.control.models import VariantState
from wva_web.dashboard import reasons

RAW = (
    "saturated:pod-a,pod-b,pod-c,pod-d, pending:pod-e,pod-f, "
    "pending:alpha-h100=1, transition_pending"
)
PLAIN = (
    "4 replicas saturated; waiting for 3 new replicas to start; "
    "an earlier change has not landed yet"
)


def block_alpha(world: World) -> None:
    VariantState.objects.filter(variant=world.alpha).update(
        conditions=[
            {
                "type": "AbleToScale",
                "status": "False",
                "reason": "transition",
                "message": RAW,
                "since": "2025-05-01T12:03:00+00:00",
            }
        ],
    )


def test_plain_reasons_counts_replicas() -> None:
    codes = reasons.split_reason_list(RAW)
    assert codes is not None
    assert reasons.plain_reasons(codes) == PLAIN


def test_plain_reasons_singular() -> None:
    text = reasons.plain_reasons(["pending:pod-a", "missing_metrics:pod-b"])
    assert text == "waiting for 1 new replica to start; 1 replica without metrics"


def test_plain_reasons_keeps_unknown_code() -> None:
    assert reasons.plain_reasons(["made_up_code"]) == "made_up_code"


def test_sentence_is_not_a_reason_list() -> None:
    assert reasons.split_reason_list("HPA alpha-hpa targets this workload") is None


def test_not_able_line_in_plain_words(world: World) -> None:
    block_alpha(world)
    body = world.client("viewer_a").get("/variants/").content.decode()
    assert f"Not able to scale: {PLAIN}, since 12:03" in body
    assert "Not able to scale: saturated:" not in body


def test_not_able_line_keeps_codes_in_details(world: World) -> None:
    block_alpha(world)
    body = world.client("viewer_a").get("/variants/").content.decode()
    assert f"<summary>reason codes</summary><code>{RAW}</code>" in body


def test_condition_message_in_plain_words(world: World) -> None:
    block_alpha(world)
    body = world.client("viewer_a").get(f"/variants/{world.alpha.pk}/").content.decode()
    row = body.split('data-condition="AbleToScale"')[1].split("</tr>")[0]
    assert PLAIN in row
    assert f"<code>{RAW}</code>" in row
    assert f"<td>{RAW}</td>" not in row
