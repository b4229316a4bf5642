"""Account names: the one spelling an account has everywhere.

Sign-up, login, the lockout counters and the database's unique indexes all compare
usernames and e-mail addresses by :func:`canonical_name`, so two spellings that look
like one account are one account, on every backend.
"""

from __future__ import annotations

import re
import unicodedata

# After case folding, U+0130 (I with a dot above) becomes "i" + U+0307. The dot adds
# nothing to a letter that already has one (i, j), so it is dropped: "victİm" is "victim".
_REDUNDANT_DOT = re.compile("(?<=[ij])\u0307")


def canonical_name(text: str) -> str:
    """``text`` under Unicode NFKC normalisation and full case folding.

    NFKC maps compatibility forms (full-width letters, ligatures, the Kelvin sign) to
    their plain letters; ``casefold`` is case-insensitive matching as Unicode defines it
    (``ß`` matches ``ss``), unlike ``lower`` in Python or in either database. Normalising
    again after folding keeps the result stable: ``canonical_name`` of its own output is
    that output.
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return _REDUNDANT_DOT.sub("", folded)
