"""Cryptographic building blocks: JOSE (JWS/JWE/JWK), key generation, certificates.

Nothing in here knows about federation, OIDC or storage.
"""
