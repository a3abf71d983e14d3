"""Leader election between two console instances over the emulated cluster's Lease."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from kubernetes import client as k8s

from fleetsim.emulator import Emulator, Fault
from tests.leader.conftest import LEASE_S
from wva_web.integrations import kube, leader

pytestmark = pytest.mark.emulator


def stored_lease(emu: Emulator) -> dict[str, Any]:
    return emu.leases.leases[leader.LEASE_NAME]


def test_first_instance_creates_lease_and_leads(make_elector, emulator):
    # Given no Lease in the cluster.
    first = make_elector("console-1")
    # When the first instance runs an election round.
    outcome = first.acquire_or_renew()
    # Then it leads, and the Lease names it with the configured duration.
    assert outcome.is_leader
    assert outcome.reason == leader.ACQUIRED
    spec = stored_lease(emulator)["spec"]
    assert spec["holderIdentity"] == "console-1"
    assert spec["leaseDurationSeconds"] == LEASE_S
    assert spec["leaseTransitions"] == 0
    assert stored_lease(emulator)["metadata"]["namespace"] == "llm"


def test_second_instance_is_read_only(make_elector, emulator, clock):
    # Given console-1 holds the Lease.
    make_elector("console-1").acquire_or_renew()
    # When console-2 runs a round 30 s later.
    clock.advance(30)
    outcome = make_elector("console-2").acquire_or_renew()
    # Then console-2 does not lead and names console-1 as the holder.
    assert not outcome.is_leader
    assert outcome.reason == leader.HELD_BY_OTHER
    assert outcome.holder == "console-1"
    assert stored_lease(emulator)["spec"]["holderIdentity"] == "console-1"


def test_renewal_keeps_leader_past_duration(make_elector, emulator, clock):
    # Given console-1 leads and renews every 30 s for 180 s (twice the duration).
    first = make_elector("console-1")
    second = make_elector("console-2")
    first.acquire_or_renew()
    outcomes = []
    for _ in range(6):
        clock.advance(30)
        outcomes.append(first.acquire_or_renew())
        outcomes.append(second.acquire_or_renew())
    # Then console-1 led every round and console-2 none.
    assert [o.is_leader for o in outcomes[0::2]] == [True] * 6
    assert [o.is_leader for o in outcomes[1::2]] == [False] * 6
    assert outcomes[-2].reason == leader.RENEWED
    assert stored_lease(emulator)["spec"]["leaseTransitions"] == 0


def test_expired_lease_taken_over(make_elector, emulator, clock):
    # Given console-1 took the Lease and then stopped renewing.
    first = make_elector("console-1")
    second = make_elector("console-2")
    first.acquire_or_renew()
    # When console-2 checks just before and just after the 90 s duration.
    clock.advance(LEASE_S - 1)
    before = second.acquire_or_renew()
    clock.advance(2)
    after = second.acquire_or_renew()
    # Then it takes over only after expiry, counting one transition.
    assert not before.is_leader
    assert after.is_leader
    assert after.reason == leader.ACQUIRED
    spec = stored_lease(emulator)["spec"]
    assert spec["holderIdentity"] == "console-2"
    assert spec["leaseTransitions"] == 1
    # And console-1, back again, finds itself read-only.
    clock.advance(1)
    returning = first.acquire_or_renew()
    assert not returning.is_leader
    assert returning.holder == "console-2"


class RacingCoordination:
    """CoordinationV1Api that lets a rival run its round just before each replace."""

    def __init__(self, api: Any, rival: leader.LeaderElector) -> None:
        self.api = api
        self.rival = rival

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)

    def replace_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        self.rival.acquire_or_renew()
        return self.api.replace_namespaced_lease(*args, **kwargs)


def test_takeover_race_has_one_winner(make_elector, emulator, clock):
    # Given an expired Lease of console-1.
    make_elector("console-1").acquire_or_renew()
    clock.advance(LEASE_S + 1)
    # When console-2 and console-3 take it over at once: console-3 writes
    # between console-2's read and console-2's write.
    third = make_elector("console-3")
    api = k8s.CoordinationV1Api(kube.new_api_client())
    second = make_elector("console-2", coordination=RacingCoordination(api, third))
    outcome = second.acquire_or_renew()
    # Then the API server returns 409 to console-2 and console-3 leads.
    assert not outcome.is_leader
    assert outcome.reason == leader.LOST_RACE
    assert outcome.holder == "console-3"
    assert stored_lease(emulator)["spec"]["holderIdentity"] == "console-3"


def test_stale_resource_version_gets_conflict(make_elector, emulator):
    # Given a Lease, and a replace that carries an old resourceVersion.
    make_elector("console-1").acquire_or_renew()
    api = k8s.CoordinationV1Api(kube.new_api_client())
    lease = api.read_namespaced_lease(leader.LEASE_NAME, "llm")
    body = {
        "metadata": {"name": leader.LEASE_NAME, "resourceVersion": "1"},
        "spec": {"holderIdentity": "intruder"},
    }
    # When it is sent.
    with pytest.raises(k8s.ApiException) as raised:
        api.replace_namespaced_lease(leader.LEASE_NAME, "llm", body)
    # Then the emulator returns 409 and keeps the Lease.
    assert lease.metadata.resource_version != "1"
    assert raised.value.status == 409
    assert stored_lease(emulator)["spec"]["holderIdentity"] == "console-1"


def test_forbidden_lease_makes_instance_read_only(make_elector, emulator):
    # Given a cluster that returns 403 to the Lease read, as without the Role.
    emulator.fault = Fault(remaining=1, status=403)
    # When console-1 runs a round.
    outcome = make_elector("console-1").acquire_or_renew()
    # Then it is read-only and its detail explains the fix.
    assert not outcome.is_leader
    assert outcome.reason == leader.LEASE_UNAVAILABLE
    assert outcome.holder == ""
    assert "HTTP 403" in outcome.detail
    assert "WVA_LEADER_ELECTION=false" in outcome.detail


def test_lease_api_not_served_is_read_only(make_elector, emulator):
    # Given a cluster that answers 404 to the Lease read and the create.
    emulator.fault = Fault(remaining=2, status=404)
    # When console-1 runs a round.
    outcome = make_elector("console-1").acquire_or_renew()
    # Then it is read-only and no Lease was stored.
    assert not outcome.is_leader
    assert outcome.reason == leader.LEASE_UNAVAILABLE
    assert leader.LEASE_NAME not in emulator.leases.leases


def test_election_off_leads_without_lease(make_elector, emulator, settings):
    # Given leader election switched off and a cluster that would answer 403.
    settings.WVA_LEADER_ELECTION = False
    emulator.fault = Fault(remaining=1, status=403)
    # When console-1 runs a round.
    outcome = make_elector("console-1").acquire_or_renew()
    # Then it leads without touching the Lease API.
    assert outcome.is_leader
    assert outcome.reason == leader.ELECTION_OFF
    assert emulator.fault is not None
    assert leader.LEASE_NAME not in emulator.leases.leases


def test_leader_keeps_lease_through_server_errors(make_elector, emulator, clock):
    # Given console-1 renewed the Lease, then every Lease call answering 500.
    first = make_elector("console-1")
    first.acquire_or_renew()
    emulator.fault = Fault(remaining=100, status=500)
    # When it runs rounds 30 s and 59 s later, inside two thirds of 90 s.
    clock.advance(30)
    early = first.acquire_or_renew()
    clock.advance(29)
    late = first.acquire_or_renew()
    # Then it still leads until its last renew plus the duration.
    assert early.is_leader
    assert late.is_leader
    assert late.reason == leader.RENEW_FAILED
    assert late.holder == "console-1"
    assert late.expires_at == clock.now + dt.timedelta(seconds=LEASE_S * 2 // 3 - 59)


def test_leader_demoted_after_renew_deadline(make_elector, emulator, clock):
    # Given console-1 renewed the Lease, then every Lease call answering 500.
    first = make_elector("console-1")
    first.acquire_or_renew()
    emulator.fault = Fault(remaining=100, status=500)
    # When it runs a round 61 s later, past two thirds of the 90 s duration.
    clock.advance(LEASE_S * 2 // 3 + 1)
    outcome = first.acquire_or_renew()
    # Then it is read-only, and the same elector no longer leads even at 59 s.
    clock.advance(-2)
    again = first.acquire_or_renew()
    assert not outcome.is_leader
    assert outcome.reason == leader.LEASE_UNAVAILABLE
    assert not again.is_leader


def test_forbidden_lease_demotes_leader_at_once(make_elector, emulator, clock):
    # Given console-1 renewed the Lease, then the Lease read answering 403.
    first = make_elector("console-1")
    first.acquire_or_renew()
    emulator.fault = Fault(remaining=1, status=403)
    # When it runs a round 30 s later, inside the duration.
    clock.advance(30)
    outcome = first.acquire_or_renew()
    # Then it is read-only at once.
    assert not outcome.is_leader
    assert outcome.reason == leader.LEASE_UNAVAILABLE


@pytest.mark.django_db
def test_elect_keeps_stored_renew_deadline(make_elector, emulator, clock):
    # Given console-1 led in a stored round, then every Lease call answering 500.
    leader.elect(make_elector("console-1"))
    emulator.fault = Fault(remaining=100, status=500)
    # When a new elector of console-1, as in the next task, runs 50 s later.
    clock.advance(50)
    outcome = leader.elect(make_elector("console-1"))
    # Then it leads on the stored deadline, which the failed round keeps.
    assert outcome.is_leader
    assert outcome.reason == leader.RENEW_FAILED
    row = leader.recorded()
    assert row is not None
    assert row.holder == "console-1"
    assert row.expires_at == clock.now + dt.timedelta(seconds=LEASE_S * 2 // 3 - 50)


def test_server_error_message_has_no_permission_hint(make_elector, emulator):
    # Given a cluster that answers 500 to the Lease read, and no earlier renew.
    emulator.fault = Fault(remaining=1, status=500)
    # When console-1 runs a round.
    outcome = make_elector("console-1").acquire_or_renew()
    # Then the detail names the server error and the retry, not permissions.
    assert not outcome.is_leader
    assert "the Lease API failed" in outcome.detail
    assert "HTTP 500" in outcome.detail
    assert "retrying each cycle" in outcome.detail
    assert "grant" not in outcome.detail


def test_forbidden_message_has_permission_hint(make_elector, emulator):
    # Given a cluster that answers 403 to the Lease read.
    emulator.fault = Fault(remaining=1, status=403)
    # When console-1 runs a round.
    outcome = make_elector("console-1").acquire_or_renew()
    # Then the detail names the permissions to grant, and no retry.
    assert "grant get, create and update on leases" in outcome.detail
    assert "retrying" not in outcome.detail
