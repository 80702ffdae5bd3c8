"""healthid-broker: OpenID Connect broker for the GesundheitsID (gematik TI OpenID Federation)."""

__version__ = "0.1.0.dev0"
