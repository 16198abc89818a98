"""The currencies a rate deck may be in: ISO 4217 codes of circulating currencies.

Fund codes (BOV, CHE, USN...), precious metals (XAU...), the SDR and the test
codes (XTS, XXX) are left out: no vendor bills a minute in them. Kept as data, not
as model choices, so a new currency needs no migration.
"""

from __future__ import annotations

CURRENCIES: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL
    BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUC CUP CVE CZK DJF DKK DOP DZD
    EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS
    INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD
    LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK
    NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK
    SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS
    UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL
    """.split()  # noqa: SIM905 (a block of codes reads better than 160 quoted strings)
)


def is_currency(code: str) -> bool:
    return code in CURRENCIES


def currency_problem(code: str) -> str | None:
    """What is wrong with `code` as a deck's currency, or None."""
    if is_currency(code):
        return None
    if code.upper() in CURRENCIES:
        return f"{code!r}: write the currency code in capitals ({code.upper()})"
    return f"{code!r}: not an ISO 4217 currency code (e.g. EUR, USD, GBP)"
