"""An approver approves a proposal in a real browser and sees the fleet change.

Debian's chromium, driven by Playwright's sync API, talks to the console on
pytest-django's live server; the console scales the in-process emulated
cluster (manual clock) through its actuator, with Celery tasks run eagerly.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from fleetsim.emulator import Emulator
from wva_web.catalog.models import Membership, Role, Team, Variant
from wva_web.celery import app as celery_app
from wva_web.control import actions
from wva_web.control.cycle import CycleService
from wva_web.control.models import ActionState, VariantState

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "approver-password-for-tests"
VARIANT = "llama-8b-l4"
# Playwright waits at most this long (ms) for a page or an element.
TIMEOUT_MS = 15_000

pytestmark = [pytest.mark.browser, pytest.mark.emulator]


def require_chromium() -> None:
    """Skip without /usr/bin/chromium, or fail when WVA_REQUIRE_SERVERS=1."""
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing; install Debian's chromium package"
    if os.environ.get("WVA_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{reason} (WVA_REQUIRE_SERVERS=1 makes this a failure)")
    pytest.skip(reason)


@pytest.fixture
def emulator(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Emulator]:
    """Start the emulated cluster without traffic and point the console at it."""
    with Emulator(
        "data/demo_fleet.json",
        tmp_path / "emulator",
        port=0,
        clock="manual",
        startup_delay_s=30.0,
        seed=1,
        trace=False,
    ) as emu:
        settings.WVA_KUBECONFIG = str(emu.kubeconfig_path)
        settings.WVA_DRY_RUN = False
        settings.CELERY_TASK_ALWAYS_EAGER = True
        monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
        yield emu


@pytest.fixture
def approver(emulator: Emulator, settings: Any) -> User:
    """Load the demo catalogue, read the cluster once and add an approver."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("load_demo", stdout=io.StringIO())
    user = User.objects.create_user("approver-1", password=PASSWORD)
    Membership.objects.create(team=Team.objects.get(), user=user, role=Role.APPROVER)
    CycleService().run()
    return user


def live_replicas(emu: Emulator, variant: str) -> int:
    return int(emu.status()["deployments"][variant]["replicas"])


@pytest.mark.django_db(transaction=True)
def test_approve_in_browser_scales_variant(
    live_server: Any,
    emulator: Emulator,
    approver: User,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_chromium()
    # Playwright's sync API runs an event loop in this thread, and Django
    # refuses database calls from a thread with a running loop without this.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import expect, sync_playwright

    # given a pending proposal 1 -> 2 on the L4 variant, which runs 1 replica
    variant = Variant.objects.get(name=VARIANT)
    assert VariantState.objects.get(variant=variant).current_replicas == 1
    action = actions.propose_action(variant.pk, 1, 2, reasons=["scale_up:test"])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            # when the approver logs in through the form
            page.goto(f"{live_server.url}/login/")
            page.fill("#id_username", approver.username)
            page.fill("#id_password", PASSWORD)
            page.click("#login-submit")
            page.wait_for_url(f"{live_server.url}/")
            # and approves the proposal on the actions page
            page.goto(f"{live_server.url}/actions/")
            card = page.locator(f'#pending [data-action-id="{action.pk}"]')
            expect(card).to_have_attribute("data-state", "pending")
            expect(card.locator(".cost-change")).to_have_text("+$0.80/h")
            page.click(f"#approve-{action.pk}")
            # then the history shows it applied and the pending list no longer has it
            row = page.locator(f'#history [data-action-id="{action.pk}"]')
            expect(row).to_have_attribute("data-state", ActionState.APPLIED)
            expect(card).to_have_count(0)
            expect(page.locator("#messages")).to_contain_text(
                f"Approved scale action {action.pk}"
            )
            # and the emulated Deployment runs 2 replicas
            assert live_replicas(emulator, VARIANT) == 2
            # when the next control cycle reads the cluster back
            emulator.advance(30.0)
            CycleService().run()
            page.goto(f"{live_server.url}/variants/")
            # then the variants page shows the new count
            expect(page.locator(f"#replicas-{variant.pk}")).to_have_text("2")
        finally:
            browser.close()
    action.refresh_from_db()
    assert action.state == ActionState.APPLIED
    assert action.decided_by == approver
