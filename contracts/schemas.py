"""JSON Schemas for upstream teams, one file per message type, in contracts/schemas/.

Run `python -m contracts.schemas` (or `make schemas`) after changing a model; a test
fails while the committed files differ from the models.
"""

import json
from pathlib import Path

from pydantic import BaseModel

from contracts.envelope import Envelope, ResultEnvelope
from contracts.inbound import PAYLOAD_MODELS
from contracts.outbound import RESULT_MODELS, DeadLetterMessage
from contracts.vendor import VendorTransferRequest, VendorTransferResponse

SCHEMA_DIR = Path(__file__).parent / "schemas"


def _models() -> dict[str, type[BaseModel]]:
    models: dict[str, type[BaseModel]] = {"envelope.inbound": Envelope, "envelope.result": ResultEnvelope}
    models |= {f"inbound.{t}": m for t, m in PAYLOAD_MODELS.items()}
    models |= {f"result.{t}": m for t, m in RESULT_MODELS.items()}
    models |= {
        "deadletter": DeadLetterMessage,
        "vendor.transfer_request": VendorTransferRequest,
        "vendor.transfer_response": VendorTransferResponse,
    }
    return models


def render() -> dict[str, str]:
    """File name -> schema text, deterministic so that drift is a plain text diff."""
    out = {}
    for name, model in _models().items():
        schema = model.model_json_schema(mode="validation")
        schema["$id"] = f"https://coterm.example/schemas/{name}.json"
        out[f"{name}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def main() -> None:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for stale in SCHEMA_DIR.glob("*.json"):
        stale.unlink()
    for name, text in render().items():
        (SCHEMA_DIR / name).write_text(text)
    print(f"wrote {len(render())} schemas to {SCHEMA_DIR}")


if __name__ == "__main__":
    main()
