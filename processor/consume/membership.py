"""The processor's membership of its Kafka consumer group: static or dynamic, its instance id, and
the broker's fatal answers turned into one line for the operator.

Static membership (KIP-345) is for a processor that keeps running: restarted within the session
timeout under the same instance id, it takes its partitions back without a rebalance. A run that
ends when idle is a batch job that will not come back, so it joins and leaves as a dynamic member
(a static member never leaves: its partitions would wait out the session timeout)."""

import time
from collections.abc import Callable
from typing import Any

import structlog
from kafka import KafkaAdminClient, TopicPartition
from kafka.errors import FencedInstanceIdError, InvalidSessionTimeoutError, KafkaError
from kafka.structs import MemberState

from processor import instance_id
from processor.kafka_io import make_consumer
from processor.settings import Settings, SettingsError

log = structlog.get_logger("coterm.membership")


class GroupFenced(SettingsError):
    """Another process joined the group under this one's instance id: Kafka fenced this one."""


class Membership:
    """The consumer and its place in the group. `subscribe` subscribes a new consumer (with its
    rebalance listener); `consumer` may be replaced by a new one (see `JoinWatch`)."""

    def __init__(self, settings: Settings, until_idle_s: float | None, bootstrap: str,
                 subscribe: Callable[[Any], None]) -> None:
        self.settings, self.bootstrap, self.subscribe = settings, bootstrap, subscribe
        static = settings.kafka_static_membership and until_idle_s is None
        self.group = settings.group_options(static=static)
        self.slot: instance_id.Slot | None = None
        if static and not self.group.get("group_instance_id"):
            self.slot = instance_id.claim(settings.group_id)
            self.group["group_instance_id"] = self.slot.id
        self.watch = FenceWatch(settings.kafka_heartbeat_interval_ms)
        self.join_watch = JoinWatch(settings.kafka_max_poll_interval_ms)
        self.consumer = self._new_consumer()

    def _new_consumer(self) -> Any:
        consumer = make_consumer(self.bootstrap, self.settings.group_id, dict(self.group), **self.settings.kafka_options())
        self.subscribe(consumer)
        return consumer

    @property
    def instance_id(self) -> str | None:
        return self.group.get("group_instance_id")

    def poll(self) -> dict[TopicPartition, list[Any]]:
        """One poll; a session timeout the broker refuses, or this member fenced, is a
        `SettingsError` (the CLI prints its one line and exits 2)."""
        consumer = self.consumer
        if self.join_watch.stuck(consumer):
            if self._taken_over(consumer):
                raise self._fenced()  # a newer process joined under this id while this one hung
            log.warning("group.join_stuck", group_id=self.settings.group_id, instance_id=self.instance_id,
                        waited_s=round(self.join_watch.grace_s, 1), action="a new consumer joins in its place")
            consumer.close(autocommit=False)
            self.consumer = consumer = self._new_consumer()
        try:
            batch = consumer.poll(timeout_ms=200, max_records=500)
        except InvalidSessionTimeoutError:
            raise SettingsError(
                f"COTERM_KAFKA_SESSION_TIMEOUT_MS={self.settings.kafka_session_timeout_ms}: the broker refused it; "
                "it must lie within the broker's group.min.session.timeout.ms and group.max.session.timeout.ms "
                "(6000 and 1800000 unless its operator changed them)") from None
        except FencedInstanceIdError:
            raise self._fenced() from None
        if self.watch.fenced(consumer):
            raise self._fenced()
        return batch  # type: ignore[no-any-return]

    def _taken_over(self, consumer: Any) -> bool:
        """Whether the group now has another member under this one's instance id. A hung join
        hides the fencing from this member; joining again would fence the newer process in turn
        (seen: the newer one stopped, the hung one carried on)."""
        if self.instance_id is None:
            return False
        mine = consumer._coordinator._generation.member_id
        try:
            admin = KafkaAdminClient(**self.settings.kafka_options(), bootstrap_servers=self.bootstrap,
                                     client_id="coterm-membership", request_timeout_ms=5000)
            try:
                members = admin.describe_groups([self.settings.group_id])[self.settings.group_id]["members"]
            finally:
                admin.close()
        except KafkaError as error:
            log.warning("group.describe_failed", group_id=self.settings.group_id, error=str(error)[:300])
            return False
        return any(m.get("group_instance_id") == self.instance_id and m.get("member_id") != mine for m in members)

    def _fenced(self) -> GroupFenced:
        return GroupFenced(
            f"group {self.settings.group_id}: another processor joined as instance {self.instance_id!r} and Kafka "
            "fenced this one, which stops; each running processor needs its own COTERM_KAFKA_GROUP_INSTANCE_ID "
            "(leave it unset for <host name>-<slot>)")

    def close(self) -> None:
        self.consumer.close(autocommit=False)
        if self.slot is not None:
            self.slot.release()


class Sustained:
    """Whether a condition has held, checked after check, for `grace_s` on end; it starts
    counting again once it has said so."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.since: float | None = None

    def held(self, now_true: bool) -> bool:
        if not now_true:
            self.since = None
            return False
        now = time.monotonic()
        self.since = self.since or now
        if now - self.since < self.grace_s:
            return False
        self.since = None
        return True


class FenceWatch(Sustained):
    """Tells when Kafka has fenced this static member. kafka-python's heartbeat task, told so by the
    broker, only stops heartbeating: the member stays 'stable' and keeps its assignment, so polls
    would go on reading partitions that now belong to the newer process (seen on Apache Kafka
    4.3 with kafka-python 3.0). A joined static member whose heartbeat stays off for several
    heartbeat intervals, with no rejoin under way, is that member (a join turns heartbeats off
    only for its round trip)."""

    def __init__(self, heartbeat_interval_ms: int) -> None:
        super().__init__(max(2.0, 3 * heartbeat_interval_ms / 1000))

    def fenced(self, consumer: Any) -> bool:
        c = getattr(consumer, "_coordinator", None)
        return self.held(c is not None and c.group_instance_id is not None and c.state == MemberState.STABLE
                         and not c._heartbeat_enabled and not c._heartbeat_closed and not c.rejoin_needed)


class JoinWatch(Sustained):
    """Tells when a group join has hung. Seen on Apache Kafka 4.3 with kafka-python 3.0.12, now and
    then, with static membership: a leader that re-joins just after its first assignment (the
    topic's metadata changed) never completes the second join, although the broker received its
    SyncGroup; the member stays 'rebalancing', stops heartbeating and is dropped after the session
    timeout, and never comes back (tests/e2e/test_compose_stack.py ran into it). A healthy join
    lasts at most the rebalance timeout (the broker holds JoinGroup that long for the others), so
    one still under way well past it is replaced by a new consumer under the same instance id."""

    def __init__(self, max_poll_interval_ms: int) -> None:
        super().__init__(max_poll_interval_ms / 1000 + 10.0)

    def stuck(self, consumer: Any) -> bool:
        c = getattr(consumer, "_coordinator", None)
        return self.held(c is not None and c.state == MemberState.REBALANCING)
