"""docs/contract.md, the page upstream publishers read, shows one example per message type, and
each is the golden example the contract tests check: it parses, and its payload is exactly the
golden one (issue 19). Its keys say what `coterm publish` does."""

import json
import re
from pathlib import Path

from aggregates.redrive import key_of
from contracts.envelope import ResultEnvelope
from contracts.outbound import RESULTS
from contracts.parsing import Inbound, parse_message

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "contract.md").read_text()
GOLDEN = ROOT / "tests" / "contracts" / "golden"


def examples(section: str) -> dict[str, dict]:  # type: ignore[type-arg]
    part = PAGE.split("## Examples", 1)[1].split(f"### {section}", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    found = [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", part, re.S)]
    by_type = {message["type"]: message for message in found}
    assert len(by_type) == len(found), "a type has two examples"
    return by_type


def test_every_inbound_type_has_its_golden_example_and_it_parses() -> None:
    golden = json.loads((GOLDEN / "inbound.json").read_text())
    shown = examples("Inbound")
    assert list(shown) == list(golden)
    for type_, message in shown.items():
        parsed = parse_message(json.dumps(message).encode())
        assert isinstance(parsed, Inbound), (type_, parsed)
        assert message["payload"] == golden[type_]


def test_every_result_type_has_its_golden_example_and_it_validates() -> None:
    golden = json.loads((GOLDEN / "results.json").read_text())
    shown = examples("Results")
    assert list(shown) == list(golden) and set(shown) == set(RESULTS)
    for type_, message in shown.items():
        ResultEnvelope.model_validate(message)
        RESULTS[type_].validate_python(message["payload"])
        assert message["payload"] == golden[type_]


def test_the_keys_the_page_gives_are_the_keys_coterm_publish_uses() -> None:
    for type_, message in examples("Inbound").items():
        key = key_of(message)
        line = PAGE.split(f"`{type_}`, key", 1)[1].split("\n", 1)[0]
        if key is None:  # the payload names no customer, product or partner: coterm publish sends it unkeyed
            assert "'s id if you know it, else none" in line, type_
        else:
            assert f"`{key.decode()}`" in line, type_
    assert "`migration.bulk_cancelled` and `clock.tick` carry no partner" in PAGE
