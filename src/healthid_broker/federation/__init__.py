"""OpenID Federation 1.0 for a relying party: statements, trust chains, metadata policy,
and the statement cache with gematik's 12 h / 24 h rules (A_23039).

Pure protocol code: no web framework, no ORM; the clock is a parameter and all outbound
HTTP goes through :class:`healthid_broker.http.HttpClient`.
"""
