"""The reason codes in the code are exactly the ones CONTRACT.md lists, and each is produced."""

import re
from pathlib import Path

import pytest

from aggregates import errors
from contracts.outbound import DeadLetterReason

CONTRACT = Path(__file__).resolve().parents[2].parent / "shared" / "CONTRACT.md"


def contract_codes(section: str) -> set[str]:
    if not CONTRACT.exists():
        pytest.skip(f"{CONTRACT} is not beside the checkout")
    text = CONTRACT.read_text()
    body = text.split(f"## {section}")[1].split("\n## ")[0]
    return set(re.findall(r"^\| `([A-Z_]+)` \|", body, flags=re.M))


def test_business_reason_codes_match_the_contract() -> None:
    ours = set(errors.MIGRATION_REASONS) | set(errors.TRANSFER_REASONS) | set(errors.FAILURE_REASONS)
    assert ours == contract_codes("3.")


def test_every_refusal_class_carries_a_contract_code() -> None:
    refusals = {cls.reason for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.Refusal)
                and cls is not errors.Refusal}
    assert refusals == set(errors.MIGRATION_REASONS) | set(errors.TRANSFER_REASONS)
    assert set(errors.NON_FINAL_REASONS) == {"DUPLICATE_HALF", "OPERATION_CLOSED", "ALREADY_SENT"}


def test_dead_letter_reasons_match_the_contract() -> None:
    assert set(DeadLetterReason.__args__) == contract_codes("2.")  # type: ignore[attr-defined]
