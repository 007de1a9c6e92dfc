"""The query API's routes, one module per concern; `projections/api.py` assembles them."""
