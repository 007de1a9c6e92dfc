"""The `coterm` command: `coterm.py` holds the parser and `main`; one module per family of
subcommands (audit, preview, publish, redrive, serve)."""
