"""Examples: runnable as scripts (``python examples/NAME.py``); a package so the tests can
import them (``from examples.webhook_receiver import ...``)."""
