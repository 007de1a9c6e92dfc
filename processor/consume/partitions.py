"""Whether scaling out scales: the orders topic's partitions against COTERM_TOPIC_PARTITIONS, and
whether this processor holds any. Kafka gives each partition to one member of the group, so a
member beyond the partition count stands idle, silently, unless it says so (log, metrics, /readyz)."""

from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("coterm.partitions")


@dataclass
class PartitionCheck:
    topic: str
    configured: int  # COTERM_TOPIC_PARTITIONS
    partitions: int | None = None  # of the orders topic, as the broker says; None until known
    held: int | None = None  # after the latest assignment; None before the first
    _said: set[str] = field(default_factory=set)

    def assigned(self, held: int) -> None:
        self.held = held
        self.say()

    def warnings(self) -> list[str]:
        found = []
        if self.partitions is not None and self.partitions < self.configured:
            found.append(f"topic {self.topic} has {self.partitions} partitions, fewer than COTERM_TOPIC_PARTITIONS="
                         f"{self.configured}: at most {self.partitions} processors of the group consume "
                         "(add partitions to the topic to scale out further)")
        if self.held == 0:
            of = f"the {self.partitions} partitions" if self.partitions else "the partitions"
            found.append(f"this processor holds none of {of} of {self.topic}: the group has more members than "
                         "partitions, so it stands idle")
        return found

    def say(self) -> None:
        """Log each warning once while it holds (again if it returns after clearing)."""
        now = set(self.warnings())
        for warning in sorted(now - self._said):
            log.warning("partitions.warning", topic=self.topic, detail=warning)
        self._said = now
