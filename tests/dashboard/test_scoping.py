"""A team-b viewer sees no team-a row on any page, in the CSV or in the live JSON."""

from __future__ import annotations

import csv
import io

from tests.dashboard.conftest import World, make_action

TEAM_A_MARKERS = ("alpha-h100", "model-of-alpha-h100")


def test_team_b_viewer_sees_no_team_a_rows(world: World) -> None:
    # given actions on both teams' variants, one with a message naming team a
    make_action(world.alpha, 4, 5)
    make_action(
        world.alpha, 4, 3, state="failed", message="alpha-h100 expected 4, found 6"
    )
    make_action(world.bravo, 2, 3)
    world.cycle.errors = [
        {
            "phase": "collect",
            "kind": "timeout",
            "message": "slow",
            "variant": "alpha-h100",
        },
        "scrape of alpha-h100-pod-2 failed",
    ]
    world.cycle.save(update_fields=["errors"])
    client = world.client("viewer_b")
    urls = [
        "/",
        "/variants/",
        "/actions/",
        "/actions.csv",
        "/cycles/",
        f"/cycles/{world.cycle.pk}/",
        "/live.json",
        f"/variants/{world.bravo.pk}/",
    ]
    # when / then
    for url in urls:
        response = client.get(url)
        body = (
            b"".join(response.streaming_content)
            if response.streaming
            else response.content
        ).decode()
        assert response.status_code == 200, url
        for marker in TEAM_A_MARKERS:
            assert marker not in body, (url, marker)
        if url not in ("/", "/cycles/"):
            assert "bravo-l40s" in body, url


def test_team_b_viewer_gets_404_on_team_a_variant(world: World) -> None:
    response = world.client("viewer_b").get(f"/variants/{world.alpha.pk}/")
    assert response.status_code == 404


def test_csv_lists_only_scoped_actions(world: World) -> None:
    # given
    make_action(world.alpha, 4, 5)
    own = make_action(world.bravo, 2, 3)
    # when
    response = world.client("viewer_b").get("/actions.csv")
    rows = list(
        csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
    )
    # then
    assert [int(r["id"]) for r in rows] == [own.pk]


def test_csv_row_has_cost_change_and_state(world: World) -> None:
    # given 2 -> 3 replicas on L40S at 2.00 USD per GPU-hour
    make_action(world.bravo, 2, 3)
    # when
    response = world.client("viewer_b").get("/actions.csv")
    row = next(
        csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
    )
    # then
    assert response["Content-Type"] == "text/csv"
    assert row["usd_per_hour_change"] == "2.00"
    assert row["state"] == "pending"
    assert row["requested_by"] == "system"


def test_csv_neutralises_formula_cells(world: World) -> None:
    # given a rejection message a spreadsheet would run as a formula
    make_action(world.bravo, 2, 3, state="rejected", message='=HYPERLINK("x")')
    # when
    response = world.client("viewer_b").get("/actions.csv")
    row = next(
        csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
    )
    # then
    assert row["message"] == '\'=HYPERLINK("x")'


def test_superuser_sees_both_teams(world: World) -> None:
    body = world.client("root").get("/variants/").content.decode()
    assert "alpha-h100" in body
    assert "bravo-l40s" in body


def test_cycle_detail_hides_other_team_samples(world: World) -> None:
    body = world.client("viewer_a").get(f"/cycles/{world.cycle.pk}/").content.decode()
    assert "alpha-h100-pod-1" in body
    assert "bravo-l40s-pod-1" not in body
    assert "bravo-reason" not in body


def test_cycle_detail_raw_json_for_superuser_only(world: World) -> None:
    world.cycle.inputs = {"secret-marker": 1}
    world.cycle.save(update_fields=["inputs"])
    viewer = world.client("viewer_a").get(f"/cycles/{world.cycle.pk}/").content.decode()
    root = world.client("root").get(f"/cycles/{world.cycle.pk}/").content.decode()
    assert "secret-marker" not in viewer
    assert "secret-marker" in root
