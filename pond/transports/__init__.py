"""Transports: console (default), memory (tests, benchmarks), wechaty (the only module
that imports wechaty). Import them by module; this package imports none of them."""
