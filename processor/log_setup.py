"""structlog configuration: JSON lines (console rendering on a terminal)."""

import logging
import sys
from typing import TextIO

import structlog


_level = logging.INFO


def debugging() -> bool:
    """Whether DEBUG lines are written (COTERM_LOG_LEVEL=debug): hot paths skip building them otherwise."""
    return _level <= logging.DEBUG


def configure_logging(stream: TextIO | None = None, level: int | str = logging.INFO) -> None:
    """`level`: a `logging` level or its name (COTERM_LOG_LEVEL's `debug`, `info`, ...)."""
    global _level
    _level = level if isinstance(level, int) else logging.getLevelNamesMapping()[level.upper()]
    stream = stream or sys.stderr
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if stream.isatty() else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.dict_tracebacks,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_level),
        # One write per line, newline included: `print` writes the text and the newline apart,
        # and on a stream that writes through the other process of `coterm run` cut lines in two.
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # kafka-python is chatty at INFO about connections and rebalances.
    logging.getLogger("kafka").setLevel(logging.WARNING)
