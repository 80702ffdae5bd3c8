"""Synthetic insured persons of the sandbox and the claims a sectoral IdP releases.

Every person is invented.  E-mail addresses use the reserved domain ``example.org``
(RFC 2606), insurer IKs are fictitious 9-digit numbers, and each KVNR (the 10-character
unchangeable part of the Krankenversichertennummer, § 290 SGB V) carries a valid check
digit so that relying parties validating the format accept it.

Scope → claim mapping: docs/ti-profile.md §7 (gematik gemSpec_IDP_Sek, claims in
the ``urn:telematik:claims`` namespace).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..ti_profile import TELEMATIK_SCOPES

KVNR_RE = re.compile(r"^[A-Z]\d{9}$")

# OID of the profession "Versicherter" (gemSpec_OID, ``oid_versicherter``).
PROFESSION_VERSICHERTER = "1.2.276.0.76.4.49"

SUPPORTED_SCOPES: tuple[str, ...] = ("openid", *TELEMATIK_SCOPES)


def kvnr_check_digit(prefix: str) -> int:
    """Check digit of a KVNR given its first 9 characters (letter + 8 digits).

    Algorithm (Richtlinien zur Krankenversichertennummer, § 290 SGB V; modified Luhn):
    the letter becomes its two-digit alphabet position (A=01 … Z=26), followed by the
    8 digits; the 10 digits are weighted alternately 1, 2, 1, 2, …; each product's digit
    sum is added; the check digit is that sum modulo 10.
    """
    if len(prefix) != 9 or not prefix[0].isascii() or not prefix[0].isupper() \
            or not prefix[1:].isdigit() or not prefix[1:].isascii():
        raise ValueError("a KVNR prefix is one letter A-Z followed by 8 digits")
    digits = f"{ord(prefix[0]) - ord('A') + 1:02d}" + prefix[1:]
    total = 0
    for i, ch in enumerate(digits):
        product = int(ch) * (1 if i % 2 == 0 else 2)
        total += product // 10 + product % 10
    return total % 10


def make_kvnr(prefix: str) -> str:
    """Complete ``prefix`` (letter + 8 digits) with its check digit."""
    return f"{prefix}{kvnr_check_digit(prefix)}"


def is_valid_kvnr(value: str) -> bool:
    """True when ``value`` has the KVNR format and a correct check digit."""
    if not isinstance(value, str) or not KVNR_RE.match(value):
        return False
    return kvnr_check_digit(value[:9]) == int(value[9])


@dataclass(frozen=True)
class Person:
    """A synthetic insured person (Versicherte/r)."""

    kvnr: str
    given_name: str
    family_name: str
    birthdate: dt.date
    sex: str  # "M", "W", "D" or "X" as in the VSDM data (urn:telematik:claims:geschlecht)
    insurer_ik: str

    @property
    def display_name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    @property
    def email(self) -> str:
        def ascii_part(s: str) -> str:
            s = s.replace("ß", "ss").replace("ä", "ae").replace("ö", "oe").replace("ü", "ue")
            s = s.replace("Ä", "Ae").replace("Ö", "Oe").replace("Ü", "Ue")
            s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode()
            return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")

        return f"{ascii_part(self.given_name)}.{ascii_part(self.family_name)}@example.org"

    def age(self, today: dt.date) -> int:
        years = today.year - self.birthdate.year
        if (today.month, today.day) < (self.birthdate.month, self.birthdate.day):
            years -= 1
        return years

    def public_summary(self) -> dict[str, Any]:
        """What ``Sandbox.info()`` lists (all synthetic, so listing it is harmless)."""
        return {
            "kvnr": self.kvnr,
            "given_name": self.given_name,
            "family_name": self.family_name,
            "birthdate": self.birthdate.isoformat(),
            "sex": self.sex,
            "email": self.email,
            "insurer_ik": self.insurer_ik,
        }


def claims_for(person: Person, scopes: Iterable[str], *, now: float) -> dict[str, Any]:
    """The identity claims for the granted ``scopes`` (docs/ti-profile.md §7)."""
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    out: dict[str, Any] = {}
    for scope in scopes:
        if scope == "urn:telematik:geburtsdatum":
            out["birthdate"] = person.birthdate.isoformat()
        elif scope == "urn:telematik:alter":
            out["urn:telematik:claims:alter"] = str(person.age(today))
        elif scope == "urn:telematik:display_name":
            out["urn:telematik:claims:display_name"] = person.display_name
        elif scope == "urn:telematik:given_name":
            out["urn:telematik:claims:given_name"] = person.given_name
        elif scope == "urn:telematik:family_name":
            out["urn:telematik:claims:family_name"] = person.family_name
        elif scope == "urn:telematik:geschlecht":
            out["urn:telematik:claims:geschlecht"] = person.sex
        elif scope == "urn:telematik:email":
            out["urn:telematik:claims:email"] = person.email
        elif scope == "urn:telematik:versicherter":
            out["urn:telematik:claims:id"] = person.kvnr
            out["urn:telematik:claims:organization"] = person.insurer_ik
            out["urn:telematik:claims:profession"] = PROFESSION_VERSICHERTER
    return out


# Fictitious insurer IKs (9 digits); they do not belong to any real Krankenkasse.
_IK_NORD = "109900011"
_IK_SUED = "109900022"
_IK_MITTE = "109900033"
_IK_PRIVAT = "169900044"

_RAW: tuple[tuple[str, str, str, str, str, str], ...] = (
    # letter+8 digits, given, family, birthdate, sex, IK
    ("A12345678", "Anna", "Schäfer", "1985-03-14", "W", _IK_NORD),
    ("B23456781", "Bernd", "Müller", "1962-11-02", "M", _IK_NORD),
    ("C34567812", "Claudia", "Weiß", "1990-07-21", "W", _IK_SUED),
    ("D45678123", "Dieter", "Köhler", "1948-01-30", "M", _IK_SUED),
    ("E56781234", "Emine", "Yılmaz", "1979-05-09", "W", _IK_MITTE),
    ("F67812345", "Finn", "Hansen", "2001-12-24", "M", _IK_MITTE),
    ("G78123456", "Greta", "Lorenz", "2008-02-29", "W", _IK_NORD),
    ("H81234567", "Hüseyin", "Demir", "1971-09-17", "M", _IK_SUED),
    ("I12348765", "Ida", "Zimmermann", "1933-04-01", "W", _IK_PRIVAT),
    ("J23487651", "Jonas", "Becker", "1995-10-10", "M", _IK_PRIVAT),
    ("K34876512", "Katarzyna", "Nowak", "1988-06-06", "W", _IK_MITTE),
    ("L48765123", "Lukas", "Schmidt", "1999-08-15", "M", _IK_NORD),
    ("M87651234", "Marie", "Dubois", "1967-03-03", "W", _IK_SUED),
    ("N76512348", "Nils", "Ötztürk", "1983-12-01", "M", _IK_MITTE),
    ("O65123487", "Olga", "Petrova", "1958-07-07", "W", _IK_NORD),
    ("P51234876", "Paul", "Wagner", "2005-01-19", "M", _IK_SUED),
    ("R12340000", "Robin", "Sommer", "1992-04-22", "D", _IK_MITTE),
    ("S24680246", "Sophie", "Krüger", "1975-02-11", "W", _IK_PRIVAT),
    ("T13579135", "Tobias", "Fischer", "1969-09-09", "M", _IK_NORD),
    ("U97531975", "Uta", "Große-Brauckmann", "1944-10-31", "W", _IK_SUED),
    ("W11223344", "Wiebke", "Janßen", "1986-05-27", "X", _IK_MITTE),
    ("X11041167", "Xaver", "Huber", "1977-08-08", "M", _IK_SUED),
    ("Z99887766", "Zoe", "Neumann", "2010-11-11", "W", _IK_NORD),
)

PERSONS: tuple[Person, ...] = tuple(
    Person(make_kvnr(p), g, f, dt.date.fromisoformat(b), s, ik)
    for p, g, f, b, s, ik in _RAW
)
_BY_KVNR = {p.kvnr: p for p in PERSONS}


def find_person(kvnr: str) -> Person | None:
    return _BY_KVNR.get(kvnr)
