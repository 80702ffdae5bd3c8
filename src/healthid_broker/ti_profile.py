"""Facts of the TI federation profile that several rooms need (docs/ti-profile.md): the scopes and
the claims they release, and the two levels of assurance. A leaf module — it imports
nothing of the project, so the provider, tenancy, upstream and the sandbox can all share
one table instead of keeping copies that could drift apart."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["ACR_HIGH", "ACR_SUBSTANTIAL", "ACR_VALUES", "KVNR_CLAIM", "SCOPE_CLAIMS",
           "TELEMATIK_SCOPES"]

# docs/ti-profile.md §7 (gematik's urn:telematik:* scopes)
SCOPE_CLAIMS: Mapping[str, tuple[str, ...]] = {
    "openid": (),
    "urn:telematik:geburtsdatum": ("birthdate",),
    "urn:telematik:alter": ("urn:telematik:claims:alter",),
    "urn:telematik:display_name": ("urn:telematik:claims:display_name",),
    "urn:telematik:given_name": ("urn:telematik:claims:given_name",),
    "urn:telematik:family_name": ("urn:telematik:claims:family_name",),
    "urn:telematik:geschlecht": ("urn:telematik:claims:geschlecht",),
    "urn:telematik:email": ("urn:telematik:claims:email",),
    "urn:telematik:versicherter": (
        "urn:telematik:claims:id",
        "urn:telematik:claims:organization",
        "urn:telematik:claims:profession",
    ),
}
TELEMATIK_SCOPES: tuple[str, ...] = tuple(s for s in SCOPE_CLAIMS if s != "openid")
KVNR_CLAIM = "urn:telematik:claims:id"

# acr values (A_23004, A_23202-02): "high" satisfies "substantial", not the other way round
ACR_HIGH = "gematik-ehealth-loa-high"
ACR_SUBSTANTIAL = "gematik-ehealth-loa-substantial"
ACR_VALUES: tuple[str, ...] = (ACR_HIGH, ACR_SUBSTANTIAL)
