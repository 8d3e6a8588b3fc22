"""Plain words for the terminal: what ``gsscreen screen`` prints about a photo, without detector retry names,
exception class names or library messages in parentheses (those stay in ``results.csv`` / ``results.json`` for
whoever needs to debug). Sentences come from :mod:`gsscreen.web.i18n`, the one place of visible strings."""

from __future__ import annotations

import re

from gsscreen.web.i18n import reason_text

_EXC_PREFIX = re.compile(r"^[A-Z][A-Za-z]*(Error|Exception|Warning)\b:?\s*")


def plain_problem(problem: str | None) -> str:
    """``problem`` without parenthesised details and exception names (``""`` for none)."""
    if not problem or problem == "nan":
        return ""
    text = str(problem).strip()
    if _EXC_PREFIX.match(text):
        return "the photo could not be processed"
    # drop "(…)" details, nested ones included, e.g. "no face found (300×300 photo; tried: pad_0.15, …)"
    prev = None
    while prev != text:
        prev, text = text, re.sub(r"\s*\([^()]*\)", "", text)
    return text.strip(" :;,") or "the photo could not be processed"


def plain_flags(codes: str | list[str] | None, lang: str = "en") -> list[str]:
    """Gate reason / note / flag codes (a list, or ``;``-joined as in results.csv) as sentences."""
    if codes is None or (isinstance(codes, float)) or codes == "nan":
        return []
    items = codes.split(";") if isinstance(codes, str) else list(codes)
    return [reason_text(lang, c.strip()) for c in items if c and c.strip()]


__all__ = ["plain_flags", "plain_problem"]
