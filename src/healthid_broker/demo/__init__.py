"""The demo: a tiny relying-party app and the one-command composition of sandbox + broker.

Not production code: the broker never imports this package.
"""
