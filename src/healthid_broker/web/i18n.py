"""German (default) and English texts for the pages people see."""

# ruff: noqa: E501 - prose lines

from __future__ import annotations

from collections.abc import Mapping

LANGS = ("de", "en")

TEXTS: dict[str, dict[str, str]] = {
    "de": {
        "choose_title": "Mit GesundheitsID anmelden",
        "choose_lead": "Wählen Sie Ihre Krankenversicherung. Sie melden sich dort mit Ihrer GesundheitsID an.",
        "search_label": "Krankenversicherung suchen",
        "continue": "Weiter",
        "no_idps": "Zurzeit ist keine Krankenversicherung erreichbar. Bitte versuchen Sie es später erneut.",
        "pkv": "private Krankenversicherung",
        "gkv": "gesetzliche Krankenversicherung",
        "error_title": "Die Anmeldung hat nicht geklappt",
        "error_back": "Zurück zur Anwendung",
        "error_ref": "Fehlercode",
        "lang_switch": "English",
        "for_app": "Anmeldung für",
        "cancel": "Abbrechen",
    },
    "en": {
        "choose_title": "Log in with GesundheitsID",
        "choose_lead": "Choose your health insurer. You will log in there with your GesundheitsID.",
        "search_label": "Search for your insurer",
        "continue": "Continue",
        "no_idps": "No health insurer can be reached right now. Please try again later.",
        "pkv": "private health insurance",
        "gkv": "statutory health insurance",
        "error_title": "The login did not work",
        "error_back": "Back to the application",
        "error_ref": "Error code",
        "lang_switch": "Deutsch",
        "for_app": "Login for",
        "cancel": "Cancel",
    },
}

# Friendly explanations of the error codes people can meet, per language.
ERRORS: dict[str, dict[str, str]] = {
    "de": {
        "invalid_request": "Die Anfrage der Anwendung ist unvollständig oder fehlerhaft.",
        "unauthorized_client": "Diese Anwendung ist für die Anmeldung nicht freigeschaltet.",
        "invalid_client": "Die Anwendung ist nicht bekannt.",
        "access_denied": "Die Anmeldung wurde abgebrochen.",
        "login_expired": "Die Anmeldung hat zu lange gedauert. Bitte beginnen Sie erneut.",
        "idp_unavailable": "Ihre Krankenversicherung ist gerade nicht erreichbar. Bitte versuchen Sie es später erneut.",
        "idp_error": "Ihre Krankenversicherung hat die Anmeldung abgelehnt.",
        "idp_mismatch": "Die Antwort kam nicht von der gewählten Krankenversicherung. Bitte beginnen Sie die Anmeldung erneut.",
        "server_error": "Ein interner Fehler ist aufgetreten.",
        "not_found": "Diese Seite gibt es nicht.",
        "temporarily_unavailable": "Der Anmeldedienst ist gerade ausgelastet. Bitte versuchen Sie es in einer Minute erneut.",
        "request_timeout": "Die Anfrage ist nicht rechtzeitig angekommen. Bitte versuchen Sie es erneut.",
    },
    "en": {
        "invalid_request": "The application's request is incomplete or malformed.",
        "unauthorized_client": "This application is not enabled for login.",
        "invalid_client": "The application is not known.",
        "access_denied": "The login was cancelled.",
        "login_expired": "The login took too long. Please start again.",
        "idp_unavailable": "Your health insurer cannot be reached right now. Please try again later.",
        "idp_error": "Your health insurer refused the login.",
        "idp_mismatch": "The answer did not come from the health insurer you chose. Please start the login again.",
        "server_error": "An internal error occurred.",
        "not_found": "This page does not exist.",
        "temporarily_unavailable": "The login service is busy right now. Please try again in a minute.",
        "request_timeout": "The request did not arrive in time. Please try again.",
    },
}


def ui_locale(ui_locales: str | None) -> str | None:
    """The first supported language of an app's ``ui_locales`` (OIDC Core §3.1.2.1: BCP 47
    tags separated by spaces, in order of preference; ``en-US`` counts as ``en``), or
    ``None`` when it names none."""
    for tag in (ui_locales or "").split(" ")[:20]:
        base = tag.split("-", 1)[0].lower()
        if base in LANGS:
            return base
    return None


def pick_language(query: Mapping[str, str], accept_language: str | None) -> str:
    """``?lang=`` wins (the page's own switch, or the app's ``ui_locales`` as
    :func:`ui_locale` read it); then the first supported language in Accept-Language; else
    German."""
    lang = query.get("lang", "")
    if lang in LANGS:
        return lang
    if accept_language:
        ranked: list[tuple[float, str]] = []
        for part in accept_language.split(","):
            bits = part.strip().split(";")
            tag = bits[0].strip().lower()[:2]
            q = 1.0
            for raw in bits[1:]:
                b = raw.strip()
                if b.startswith("q="):
                    try:
                        q = float(b[2:])
                    except ValueError:
                        q = 0.0
            if tag in LANGS:
                ranked.append((q, tag))
        if ranked:
            ranked.sort(key=lambda t: -t[0])
            return ranked[0][1]
    return "de"
