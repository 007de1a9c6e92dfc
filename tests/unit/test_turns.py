"""The outbox's index of calls waiting behind others, both ways."""

from processor.outbox.turns import WaitsFor


def test_an_answered_call_frees_exactly_the_calls_behind_it() -> None:
    waits = WaitsFor()
    waits.wait("b", ["a"])
    waits.wait("c", ["a", "b"])
    waits.wait("d", ["x"])
    assert waits.behind_of("a") == {"b", "c"} and waits.behind_of("b") == {"c"} and len(waits) == 3
    waits.wait("c", ["b"])  # its turn was asked again: only b is ahead now
    assert waits.behind_of("a") == {"b"} and waits.get("c") == ["b"]
    waits.drop("b")
    assert "b" not in waits and waits.behind_of("a") == set() and waits.behind_of("b") == {"c"}
    waits.drop("c")
    waits.drop("d")
    assert len(waits) == 0 and waits.behind == {}  # nothing left behind, no empty sets kept
