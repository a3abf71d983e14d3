"""One condition carries the same reason code on every surface."""

from __future__ import annotations

import logging

from tests.control.fakes import NOW, FakeMetrics, FakePod, exposition
from wva_web.control.cycle import CycleService
from wva_web.control.models import Decision, VariantState
from wva_web.integrations.kube import Actuator

CODE = "capped_by_max"


def test_cap_reason_code_matches_everywhere(variant, kube, admin_client, caplog):
    # Given five saturated replicas of a variant whose max is 4.
    kube.add("a", 5, [FakePod(f"a{i}") for i in range(5)])
    source = FakeMetrics({f"a{i}": exposition(kv=0.9, waiting=6) for i in range(5)})
    actuator = Actuator(apps=kube, core=kube, autoscaling=kube, dry_run=False)
    # When a cycle runs and proposes the capped count.
    with caplog.at_level(logging.INFO, logger="wva_web"):
        CycleService(metrics_source=source, actuator=actuator, clock=lambda: NOW).run()
    decision = Decision.objects.get(variant=variant)
    limited = VariantState.objects.get(variant=variant).conditions[2]
    api = admin_client.get(f"/api/v1/variants/{variant.pk}/").json()
    api_limited = next(
        c for c in api["state"]["conditions"] if c["type"] == "ScalingLimited"
    )
    page = admin_client.get(f"/variants/{variant.pk}/").content.decode()
    logged = [r.getMessage() for r in caplog.records if CODE in r.getMessage()]
    # Then the Decision row records the code.
    assert decision.target_replicas == 4
    assert CODE in decision.reasons
    # And the stored condition and the API return it.
    assert limited["reason"] == CODE
    assert api_limited["reason"] == CODE
    assert api_limited["status"] == "True"
    # And a log line names it with the variant.
    assert len(logged) >= 1
    assert "variant=a" in logged[0]
    # And the page shows the status line with it.
    assert f'data-reason="{CODE}"' in page
    assert "Limited: wants 6, capped at 4 (max)" in page
