"""/api/v1/comparisons/: list, create and retrieve, with roles and messages."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.simulate.conftest import SHORT, People, add_plot, make_run
from wva_web.simulate.models import ComparisonRun, RunStatus

URL = "/api/v1/comparisons/"
BODY = {
    "trace": "azure-conv",
    "scale": 0.5,
    "scale_mode": "compress",
    "policies": ["wva", "hpa-kv"],
    "seed": 3,
    "duration_s": 60,
}


def api(people: People, name: str) -> APIClient:
    client = APIClient()
    client.force_authenticate(people.users[name])
    return client


def test_api_needs_authentication(people: People) -> None:
    assert APIClient().get(URL).status_code in (401, 403)
    assert APIClient().post(URL, BODY, format="json").status_code in (401, 403)


@pytest.mark.parametrize("name", ["viewer", "outsider"])
def test_api_create_forbidden_before_validation(people: People, name: str) -> None:
    response = api(people, name).post(URL, {"scale": "junk"}, format="json")
    assert response.status_code == 403
    assert "operator role" in response.json()["detail"]
    assert not ComparisonRun.objects.exists()


def test_api_create_queues_run(
    people: People, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        response = api(people, "operator").post(URL, BODY, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "queued"
    assert body["created_by"] == "operator"
    assert body["options"] == SHORT.to_json()
    assert body["page"].endswith(f"/compare/{body['id']}/")
    assert len(callbacks) == 1


def test_api_create_with_defaults(people: People) -> None:
    response = api(people, "approver").post(URL, {}, format="json")
    assert response.status_code == 201
    assert response.json()["options"]["duration_s"] == 600.0


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"scale": 0}, "scale", "scale 0 is out of range"),
        ({"scale": "x"}, "scale", "scale 'x' is not a number"),
        ({"trace": "nope"}, "trace", "unknown trace 'nope'"),
        ({"policies": ["hpa"]}, "policies", "unknown policy 'hpa'"),
        ({"duration_s": 100000}, "duration_s", "duration 100000 s is out of range"),
        (
            {"duration_s": 99999999},
            "duration_s",
            "duration 99999999 s is out of range: use 60 to 3600 s",
        ),
        ({"scale": True}, "scale", "scale true is not a number"),
        ({"seed": False}, "seed", "seed false is not an integer"),
        ({"replicas": 2}, "replicas", "unknown option 'replicas'"),
    ],
)
def test_api_create_rejects_value(
    people: People, body: dict[str, Any], field: str, message: str
) -> None:
    response = api(people, "operator").post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json()[field][0].startswith(message)
    assert not ComparisonRun.objects.exists()


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("scale", "scale is null: send a number"),
        ("duration_s", "duration_s is null: send a number of seconds"),
        ("seed", "seed is null: send an integer"),
    ],
)
def test_api_create_rejects_null(people: People, field: str, message: str) -> None:
    response = api(people, "operator").post(URL, {**BODY, field: None}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert response.json()[field][0].startswith(message)
    assert not ComparisonRun.objects.exists()


def test_api_create_rejects_non_object(people: People) -> None:
    response = api(people, "operator").post(URL, [1, 2], format="json")
    assert response.status_code == 400
    assert response.json() == {
        "non_field_errors": ["send the options as a JSON object"]
    }


def test_api_create_over_limit_conflict(people: People, settings: Any) -> None:
    settings.WVA_COMPARE_MAX_QUEUED = 0
    make_run(people.users["operator"])
    response = api(people, "operator").post(URL, BODY, format="json")
    assert response.status_code == 409
    assert "already queued or running" in response.json()["detail"]


def test_api_list_without_result(people: People) -> None:
    make_run(
        people.users["operator"],
        status=RunStatus.SUCCEEDED,
        result={"policies": {"wva": {"usd": 1.0}}},
    )
    body = api(people, "viewer").get(URL).json()
    assert body["count"] == 1
    assert body["results"][0]["result"] is None
    expanded = api(people, "viewer").get(URL, {"expand": "1"}).json()
    assert expanded["results"][0]["result"] == {"policies": {"wva": {"usd": 1.0}}}


def test_api_list_filters_status(people: People) -> None:
    make_run(people.users["operator"], status=RunStatus.FAILED, error="boom")
    make_run(people.users["operator"])
    body = api(people, "viewer").get(URL, {"status": "failed"}).json()
    assert [run["error"] for run in body["results"]] == ["boom"]


def test_api_retrieve_has_result_and_plots(people: People) -> None:
    run = make_run(
        people.users["operator"],
        status=RunStatus.SUCCEEDED,
        result={"policies": {}},
    )
    add_plot(run, "replicas.html", "<html>replicas</html>")
    body = api(people, "outsider").get(f"{URL}{run.pk}/").json()
    assert body["result"] == {"policies": {}}
    assert body["plots"] == [f"http://testserver/compare/{run.pk}/plots/replicas.html"]


def test_api_list_plots_in_few_queries(
    people: People, django_assert_max_num_queries: Any
) -> None:
    for _ in range(3):
        run = make_run(people.users["operator"], status=RunStatus.SUCCEEDED)
        add_plot(run, "replicas.html", "<html>replicas</html>")
        add_plot(run, "load.html", "<html>load</html>")
    client = api(people, "viewer")
    # session, user, memberships, count, runs, plots (one query for all runs)
    with django_assert_max_num_queries(8):
        body = client.get(URL).json()
    for item in body["results"]:
        assert item["plots"] == [
            f"http://testserver/compare/{item['id']}/plots/replicas.html",
            f"http://testserver/compare/{item['id']}/plots/load.html",
        ]


def test_api_schema_lists_comparisons(people: People) -> None:
    response = api(people, "viewer").get("/api/v1/schema/", {"format": "json"})
    paths = response.json()["paths"]
    assert "post" in paths["/api/v1/comparisons/"]
    assert "get" in paths["/api/v1/comparisons/{id}/"]
    request = paths["/api/v1/comparisons/"]["post"]["requestBody"]
    assert "ComparisonOptions" in str(request)
