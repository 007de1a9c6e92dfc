"""Which decided vendor calls wait behind which (CONTRACT.md 1.2), both ways: an answered call
frees the calls behind it without a scan of every waiting call (that scan, once per answer, was
a fifth of the outbox's time with thousands of calls waiting on a few sources)."""


class WaitsFor:
    def __init__(self) -> None:
        self.ahead: dict[str, list[str]] = {}  # a waiting call -> the transfers ahead of it
        self.behind: dict[str, set[str]] = {}  # a transfer -> the calls that wait for it

    def __len__(self) -> int:
        return len(self.ahead)

    def __contains__(self, op: str) -> bool:
        return op in self.ahead

    def get(self, op: str) -> list[str] | None:
        return self.ahead.get(op)

    def wait(self, op: str, ahead: list[str]) -> None:
        self.drop(op)
        self.ahead[op] = ahead
        for other in ahead:
            self.behind.setdefault(other, set()).add(op)

    def drop(self, op: str) -> None:
        for other in self.ahead.pop(op, ()):
            waiting = self.behind.get(other)
            if waiting is not None:
                waiting.discard(op)
                if not waiting:
                    del self.behind[other]

    def behind_of(self, op: str) -> set[str]:
        """The calls that waited for `op` (answered or closed now): their turn may have come."""
        return set(self.behind.get(op, ()))
