"""The composition root: settings → implementations, secret loading, background loops.

Everything below receives its collaborators as parameters; this room decides which store,
database, key provider, outbound client and federation a process uses.
"""
