"""Overview cards: only accelerators in use, each in its chart colour."""

from __future__ import annotations

import re

from tests.dashboard.conftest import World
from wva_web.catalog.models import Accelerator
from wva_web.control.models import AcceleratorSample


def make_accelerator(name: str) -> Accelerator:
    return Accelerator.objects.create(
        name=name,
        memory_gb=80,
        usd_per_gpu_hour=5.0,
        power_idle_w=90,
        power_mid_w=300,
        power_full_w=500,
        gpus_available=4,
    )


def card_names(body: str) -> list[str]:
    return re.findall(r'class="card accelerator" data-accelerator="([^"]+)"', body)


def test_unused_accelerator_gets_no_card(world: World) -> None:
    # given an accelerator that no variant runs on and that has no sample
    make_accelerator("B200")
    # when
    body = world.client("viewer_a").get("/").content.decode()
    # then only the accelerators of alpha and bravo have cards
    assert card_names(body) == ["H100-80GB", "L40S"]


def test_accelerator_with_sample_only_gets_card(world: World) -> None:
    # given a sample of an accelerator whose variants were deleted
    a100 = make_accelerator("A100-80GB")
    AcceleratorSample.objects.create(
        cycle=world.cycle,
        accelerator=a100,
        at=world.cycle.started_at,
        replicas=1,
        ready_replicas=1,
        gpus_used=1,
        utilisation=0.5,
        power_w=300.0,
        usd_per_hour=5.0,
    )
    body = world.client("viewer_a").get("/").content.decode()
    assert card_names(body) == ["A100-80GB", "H100-80GB", "L40S"]


def test_card_carries_chart_colour(world: World) -> None:
    body = world.client("viewer_a").get("/").content.decode()
    assert 'data-accelerator="H100-80GB"\n           data-colour="#1f77b4"' in body


def test_live_json_lists_used_accelerators(world: World) -> None:
    make_accelerator("B200")
    data = world.client("viewer_a").get("/live.json").json()
    assert [card["name"] for card in data["accelerators"]] == ["H100-80GB", "L40S"]


def test_cards_share_width_in_css(world: World) -> None:
    css = world.client("viewer_a").get("/static/css/console.css")
    text = b"".join(css.streaming_content).decode()
    assert "grid-template-columns: repeat(auto-fit, minmax(240px, 1fr))" in text
