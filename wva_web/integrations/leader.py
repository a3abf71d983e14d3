"""Per-cluster leader election over a coordination.k8s.io/v1 Lease.

Several console instances, each with its own database, may point at one
cluster. Only the holder of the Lease `wva-console-leader` in
WVA_LEADER_NAMESPACE runs control cycles and applies scale actions there;
the other instances are read-only for that cluster. The holder renews the
Lease at the start of every cycle. Another instance takes it over once
`renewTime + leaseDurationSeconds` lies in the past on its own clock. Every
write carries the `resourceVersion` it read, so of two instances racing
for an expired Lease the API server accepts one and rejects the other
with 409 Conflict.

A leader whose Lease read or write fails for a transient reason (5xx,
timeout, connection error) keeps leading until its renew deadline: the
time of its last successful renew plus two thirds of the lease duration.
No other instance can take the Lease over before the whole duration has
passed, so the last third is a margin for clock skew. Past that deadline, on 403
without the Role, on 404 when the API is not served, and while another
identity holds the Lease, the instance is read-only. Setting
WVA_LEADER_ELECTION to false skips the election and makes the instance the
leader, for a single console per cluster.

Each outcome is mirrored in the local `CycleLock` row `cluster-leader`, so
pages can show which instance leads without calling the cluster.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import urllib3
from django.conf import settings
from django.utils import timezone
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from wva_web.control.models import CycleLock
from wva_web.integrations import kube

logger = logging.getLogger(__name__)

LEASE_NAME = "wva-console-leader"
# Fraction of the lease duration a leader gives up early when it cannot renew.
RENEW_MARGIN = 1 / 3
# Name of the local CycleLock row that records the last election outcome.
LEADER_ROW = "cluster-leader"
DEFAULT_NAMESPACE = "llm"
# Kubernetes MicroTime: RFC 3339 with exactly six fractional digits, in UTC.
MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"

# Outcome reason codes.
ACQUIRED = "acquired"
RENEWED = "renewed"
HELD_BY_OTHER = "held_by_other"
LOST_RACE = "lost_race"
LEASE_UNAVAILABLE = "lease_unavailable"
# The Lease API failed transiently, and the last renew has not expired yet.
RENEW_FAILED = "renew_failed"
ELECTION_OFF = "election_off"

Clock = Callable[[], dt.datetime]


def election_enabled() -> bool:
    return bool(getattr(settings, "WVA_LEADER_ELECTION", True))


def lease_namespace() -> str:
    return str(getattr(settings, "WVA_LEADER_NAMESPACE", "") or DEFAULT_NAMESPACE)


def lease_duration_s() -> int:
    """Return the lease duration in seconds.

    The default is three cycle periods, and at least the cycle lock's
    timeout. That timeout exceeds the cycle's hard time limit, so a cycle
    that renewed the lease at its start ends before the lease can expire.
    """
    configured = getattr(settings, "WVA_LEADER_LEASE_S", None)
    if configured:
        return int(configured)
    period = float(settings.WVA_CYCLE_PERIOD_S)
    return int(max(3.0 * period, float(settings.WVA_CYCLE_LOCK_S)))


@dataclass(frozen=True)
class Leadership:
    """The outcome of one election round, as this instance saw it."""

    is_leader: bool
    # holderIdentity of the Lease; empty when the Lease could not be read.
    holder: str
    reason: str
    detail: str
    checked_at: dt.datetime
    expires_at: dt.datetime | None = None


def micro_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime(MICRO_TIME)


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is None or timezone.is_aware(moment):
        return moment
    return moment.replace(tzinfo=dt.UTC)


class LeaderElector:
    """Takes, renews and reads the leader Lease through CoordinationV1Api."""

    def __init__(
        self,
        coordination: Any = None,
        *,
        identity: str | None = None,
        namespace: str | None = None,
        duration_s: int | None = None,
        clock: Clock | None = None,
        timeout_s: float | None = None,
        renew_deadline: dt.datetime | None = None,
    ) -> None:
        self._coordination = coordination
        self.identity = identity or str(settings.WVA_INSTANCE)
        self.namespace = namespace or lease_namespace()
        self.duration_s = int(duration_s or lease_duration_s())
        self.clock = clock or timezone.now
        self.timeout_s = float(timeout_s or settings.WVA_KUBE_TIMEOUT_S)
        # Last successful renew plus the lease duration; None when not leading.
        self.renew_deadline = _aware(renew_deadline)

    @property
    def coordination(self) -> Any:
        if self._coordination is None:
            self._coordination = k8s.CoordinationV1Api(kube.new_api_client())
        return self._coordination

    def _call(self, what: str, method: str, *args: Any) -> Any:
        func = getattr(self.coordination, method)
        try:
            return func(*args, _request_timeout=self.timeout_s)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise kube.classify(exc, what) from exc

    # Rounds.

    def acquire_or_renew(self) -> Leadership:
        """Run one election round: create, renew or take over the Lease if allowed."""
        now = self.clock()
        if not election_enabled():
            return Leadership(
                True, self.identity, ELECTION_OFF, "leader election is off", now
            )
        try:
            leadership = self._round(now)
        except kube.ActuatorError as exc:
            leadership = self._unavailable(exc, now)
        if not leadership.is_leader:
            self.renew_deadline = None
        return leadership

    def observe(self) -> Leadership:
        """Read the Lease and report who leads, without writing it."""
        now = self.clock()
        if not election_enabled():
            return Leadership(
                True, self.identity, ELECTION_OFF, "leader election is off", now
            )
        try:
            lease = self._read()
        except kube.ActuatorError as exc:
            return self._unavailable(exc, now)
        if lease is None:
            return Leadership(False, "", HELD_BY_OTHER, "the lease does not exist", now)
        holder, expires = self._holder(lease)
        leads = holder == self.identity and expires is not None and expires > now
        reason = RENEWED if leads else HELD_BY_OTHER
        detail = self._held_text(holder, expires)
        return Leadership(leads, holder, reason, detail, now, expires)

    def _round(self, now: dt.datetime) -> Leadership:
        lease = self._read()
        if lease is None:
            return self._create(now)
        holder, expires = self._holder(lease)
        if holder == self.identity:
            return self._write(lease, now, ACQUIRED if expires is None else RENEWED)
        if holder and expires is not None and expires > now:
            detail = self._held_text(holder, expires)
            return Leadership(False, holder, HELD_BY_OTHER, detail, now, expires)
        logger.info(
            "lease %s/%s of %s expired at %s: taking it over",
            self.namespace,
            LEASE_NAME,
            holder or "nobody",
            expires,
        )
        return self._write(lease, now, ACQUIRED)

    def _read(self) -> Any | None:
        """Return the Lease, or None when it does not exist.

        A 404 also comes from an API server that does not serve Leases. Then
        the create that follows gets 404 too, which reports the API missing.
        """
        what = f"read lease {self.namespace}/{LEASE_NAME}"
        try:
            return self._call(what, "read_namespaced_lease", LEASE_NAME, self.namespace)
        except kube.PermanentActuatorError as exc:
            if exc.status == 404:
                return None
            raise

    def _holder(self, lease: Any) -> tuple[str, dt.datetime | None]:
        spec = lease.spec
        holder = str(getattr(spec, "holder_identity", "") or "")
        renewed = _aware(getattr(spec, "renew_time", None))
        seconds = getattr(spec, "lease_duration_seconds", None) or self.duration_s
        if renewed is None:
            return holder, None
        return holder, renewed + dt.timedelta(seconds=int(seconds))

    def _spec(
        self, now: dt.datetime, acquired: bool, transitions: int
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration_s,
            "renewTime": micro_time(now),
            "leaseTransitions": transitions,
        }
        if acquired:
            spec["acquireTime"] = micro_time(now)
        return spec

    def _create(self, now: dt.datetime) -> Leadership:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE_NAME, "namespace": self.namespace},
            "spec": self._spec(now, acquired=True, transitions=0),
        }
        what = f"create lease {self.namespace}/{LEASE_NAME}"
        try:
            self._call(what, "create_namespaced_lease", self.namespace, body)
        except kube.TransientActuatorError as exc:
            if exc.status != 409:
                raise
            return self._lost(now)
        logger.info(
            "instance %s created lease %s/%s and leads the cluster",
            self.identity,
            self.namespace,
            LEASE_NAME,
        )
        return self._leading(now, ACQUIRED)

    def _write(self, lease: Any, now: dt.datetime, reason: str) -> Leadership:
        spec = lease.spec
        transitions = int(getattr(spec, "lease_transitions", None) or 0)
        taking_over = str(getattr(spec, "holder_identity", "") or "") != self.identity
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": LEASE_NAME,
                "namespace": self.namespace,
                "resourceVersion": lease.metadata.resource_version,
            },
            "spec": self._spec(
                now, acquired=taking_over, transitions=transitions + int(taking_over)
            ),
        }
        if not taking_over and getattr(spec, "acquire_time", None) is not None:
            body["spec"]["acquireTime"] = micro_time(_aware(spec.acquire_time) or now)
        what = f"update lease {self.namespace}/{LEASE_NAME}"
        try:
            self._call(
                what, "replace_namespaced_lease", LEASE_NAME, self.namespace, body
            )
        except kube.TransientActuatorError as exc:
            if exc.status != 409:
                raise
            return self._lost(now)
        if taking_over:
            logger.info(
                "instance %s took over lease %s/%s and leads the cluster",
                self.identity,
                self.namespace,
                LEASE_NAME,
            )
        return self._leading(now, reason)

    def _leading(self, now: dt.datetime, reason: str) -> Leadership:
        # Act until a third of the lease before it expires, so that clock
        # skew between instances cannot let two lead at once. The stored
        # outcome carries this deadline, which the next task's elector reads.
        self.renew_deadline = self._deadline(
            now + dt.timedelta(seconds=self.duration_s)
        )
        detail = f"{self.identity} leads until {self.renew_deadline.isoformat()}"
        return Leadership(True, self.identity, reason, detail, now, self.renew_deadline)

    def _deadline(self, expires: dt.datetime) -> dt.datetime:
        return expires - dt.timedelta(seconds=self.duration_s * RENEW_MARGIN)

    def _lost(self, now: dt.datetime) -> Leadership:
        """Report a 409 on a write: another instance changed the Lease first."""
        logger.info(
            "lease %s/%s changed while instance %s wrote it: another instance won",
            self.namespace,
            LEASE_NAME,
            self.identity,
        )
        try:
            lease = self._read()
        except kube.ActuatorError as exc:
            return self._unavailable(exc, now)
        holder, expires = self._holder(lease) if lease is not None else ("", None)
        if holder == self.identity and expires is not None and expires > now:
            # Another worker of this same instance renewed it first.
            self.renew_deadline = self._deadline(expires)
            detail = self._held_text(holder, expires)
            return Leadership(True, holder, RENEWED, detail, now, self.renew_deadline)
        detail = self._held_text(holder, expires)
        return Leadership(False, holder, LOST_RACE, detail, now, expires)

    def _held_text(self, holder: str, expires: dt.datetime | None) -> str:
        until = f" until {expires.isoformat()}" if expires is not None else ""
        return f"{holder or 'nobody'} holds lease {self.namespace}/{LEASE_NAME}{until}"

    def _unavailable(self, exc: kube.ActuatorError, now: dt.datetime) -> Leadership:
        """Keep leading through a transient failure before the renew deadline.

        Otherwise report the instance read-only, with what to do about it.
        """
        detail = unavailable_text(exc, self.namespace)
        deadline = self.renew_deadline
        transient = isinstance(exc, kube.TransientActuatorError)
        if transient and deadline is not None and deadline > now:
            detail = f"{self.identity} leads until {deadline.isoformat()}, but {detail}"
            logger.warning("instance %s keeps leading: %s", self.identity, detail)
            return Leadership(True, self.identity, RENEW_FAILED, detail, now, deadline)
        logger.warning("instance %s is read-only: %s", self.identity, detail)
        return Leadership(False, "", LEASE_UNAVAILABLE, detail, now)


def unavailable_text(exc: kube.ActuatorError, namespace: str) -> str:
    """Describe a failed Lease call and how to fix it, by its HTTP status."""
    lease = f"lease {namespace}/{LEASE_NAME}"
    single = "or set WVA_LEADER_ELECTION=false when one console manages this cluster"
    if isinstance(exc, kube.TransientActuatorError):
        return f"the Lease API failed: {exc}; retrying each cycle"
    if exc.status == 403:
        return (
            f"{lease} is forbidden ({exc}): grant get, create and update on "
            f"leases.coordination.k8s.io, {single}"
        )
    if exc.status == 404:
        return (
            f"the API server does not serve coordination.k8s.io/v1 Leases "
            f"({exc}): {single}"
        )
    return f"the Lease API rejected the request for {lease}: {exc}"


# Local record of the outcome.


def record(leadership: Leadership) -> None:
    """Store the outcome in the `cluster-leader` row for pages and tasks."""
    CycleLock.objects.update_or_create(
        name=LEADER_ROW,
        defaults={
            "holder": leadership.holder[:128],
            "expires_at": leadership.expires_at,
            "detail": leadership.detail[:255],
            "checked_at": leadership.checked_at,
        },
    )


def recorded() -> CycleLock | None:
    """Return the last stored outcome, or None before the first election round."""
    return CycleLock.objects.filter(name=LEADER_ROW).first()


def read_only_holder(row: CycleLock | None) -> str | None:
    """Return who leads when this instance is read-only by `row`, else None.

    The result is "" when the Lease could not be read, so no leader is known.
    """
    if row is None or row.checked_at is None:
        return None
    if row.holder == settings.WVA_INSTANCE:
        return None
    return row.holder


def stored_renew_deadline(identity: str) -> dt.datetime | None:
    """Return the renew deadline stored by the last round, if `identity` led."""
    row = recorded()
    if row is None or row.holder != identity:
        return None
    return row.expires_at


def elect(elector: LeaderElector | None = None) -> Leadership:
    """Run one election round and store its outcome.

    Each task builds a new elector, so the renew deadline of the last
    successful renew comes from the stored outcome.
    """
    elector = elector or LeaderElector()
    if elector.renew_deadline is None:
        elector.renew_deadline = stored_renew_deadline(elector.identity)
    leadership = elector.acquire_or_renew()
    record(leadership)
    return leadership
