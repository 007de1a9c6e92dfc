"""The outbox: carries out what the store records, and records what came back.

Why the vendor is called exactly once per transfer (at least once on the wire, once in effect):
1. The decision is an event: pairing records `VendorCallRequested` in the same transaction as
   the second half (`aggregates/transfer_commands.py`), or, both halves in one batch, the
   operation's `Opened` carries it (`call`); no request, no call.
2. Only the leader sends (`leadership.py`: a lease row with an epoch); every round's writes
   carry the lease as a fence (PostgreSQL; a SQLite store has one processor), so a deposed
   leader records nothing (`dispatch.py`, `dispatch`; `round_decisions.py`).
3. A call's body is fixed before it leaves: the decided request, or the body recorded as
   `VendorCallSent` in the round that sends it (`take_turn`); every resend sends the same bytes.
4. Every call carries `Idempotency-Key` = operation id and the vendor answers a repeat with
   409, counted as success (`vendor_client.py`): a resend after a crash or takeover is harmless.
5. An outcome is recorded once (the transfer's version check), and a recorded outcome ends the
   awaiting state, so no later round or leader sends that call again.

Modules: `dispatch` (the rounds), `round_decisions` (what a round records, in transactions of
100 operations), `recent_transfers` (transfers rebuilt from the events the follower read),
`process` (the outbox beside the consumer), `leadership`, `vendor_client` (over libcurl:
`http_transport`), `results` (events to result messages), `topic_ends` (pairing timeout).
"""
