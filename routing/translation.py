"""Number translation: a customer's numbers to E.164 on the way in, a trunk's format on the way out.

Pure and free of Django, like routing.numbers: the models validate with it, the
resolver applies it, and tests call it without a database.

Inbound, per customer (`normalise`): a number in the customer's dialling context
(its country code, national prefix such as "0" and international prefix such as
"00"; a leading "+" is always international) becomes E.164 digits, then the
customer's ordered rules may rewrite it. Outbound, per trunk (`to_carrier`): the
E.164 digits are written in the carrier's format (`NumberFormat`), then the trunk's
ordered rules may rewrite them.

Rules are text, one per line: `PATTERN => REPLACEMENT`, e.g. `^0044(\\d+)$ => 44\\1`.
The first rule whose pattern is found in the number applies (like Kamailio's
dialplan module) and the part it matched is replaced: anchor with ^ and $ to replace
the whole number. Blank lines and lines starting with # are comments. Patterns are
RE2 syntax (https://github.com/google/re2/wiki/Syntax) and run on RE2, whose matching
time is linear in the number's length whatever the pattern: no back-references,
no look-around, and `(\\d+)+$` cannot hang a decision. A replacement is digits
(a leading "+" allowed) and group references \\1 to \\9, so a rule cannot produce
letters; that it produces a non-empty number can only be checked per call, where a
failure refuses the call (inbound) or skips the trunk (outbound) with the reason.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

import re2

MAX_RULES = 50
MAX_PATTERN = 200  # characters of one pattern
MAX_NUMBER = 32  # digits of a translated number (routing.rows.MAX_PREFIX)
ARROW = "=>"

_DIGITS = re.compile(r"[0-9]+")  # used with fullmatch: "$" would allow a final newline
_NUMBER = re.compile(r"\+?[0-9]+")
_REFERENCE = re.compile(r"\\(\d)")

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is the operator's message, not a log line
_OPTIONS.max_mem = 1 << 20  # bytes of compiled program: refuses absurdly large patterns


class RuleError(ValueError):
    """A rules text that cannot be used; the message names the rule and its line."""


class TranslationFailed(ValueError):
    """A number a translation cannot produce (empty, not digits, too long) for one call."""


class NumberFormat(enum.StrEnum):
    """How a trunk's carrier wants numbers written (E.164 33612345678 as the example)."""

    AS_ROUTED = ""  # unchanged: as dialled, or E.164 digits after a customer's normalisation
    E164 = "e164"  # 33612345678
    PLUS = "plus"  # +33612345678
    INTERNATIONAL = "international"  # 0033612345678 (the trunk's international prefix)
    NATIONAL = "national"  # 0612345678 in the trunk's country, else international


@dataclass(frozen=True, slots=True)
class Rule:
    """One line of a rules text: where it is, its pattern and its replacement's parts."""

    number: int  # its position among the rules, from 1
    line: int  # its line in the text, from 1
    pattern: str
    replacement: str
    parts: tuple[str | int, ...]  # literal text, or a group number
    regex: object  # re2 compiled pattern

    def apply(self, number: str) -> str | None:
        """The number with the matched part replaced, or None when the pattern is not found."""
        match = self.regex.search(number)
        if match is None:
            return None
        start, end = match.span()
        middle = "".join(
            part if isinstance(part, str) else (match.group(part) or "") for part in self.parts
        )
        return number[:start] + middle + number[end:]

    def __str__(self) -> str:
        return f"rule {self.number} ({self.pattern} {ARROW} {self.replacement})"


@dataclass(frozen=True, slots=True)
class Rules:
    """A rules text, compiled: its rules in order, and one RE2 set of all their patterns
    that finds the first matching rule in a single pass over the number (the Python
    wrapper costs ~1.5 us per search, so a dozen rules searched one by one would cost
    more than the rest of a decision)."""

    rules: tuple[Rule, ...] = ()
    patterns: object | None = None  # re2.Set of the patterns, when there are several

    def __iter__(self):
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def first_match(self, number: str) -> tuple[str, Rule | None]:
        """The number rewritten by the first rule whose pattern is found in it, and that
        rule; or the number unchanged and None."""
        if self.patterns is None:
            for rule in self.rules:
                result = rule.apply(number)
                if result is not None:
                    return result, rule
            return number, None
        found = self.patterns.Match(number)
        if not found:
            return number, None
        rule = self.rules[min(found)]
        result = rule.apply(number)
        return (number, None) if result is None else (result, rule)


@functools.lru_cache(maxsize=4096)
def parse_rules(text: str) -> Rules:
    """The rules of a text, compiled; raises RuleError naming the first bad rule.

    Cached by the text itself (not by a row), so a compiled route table's rows and every
    call share one compilation, and a changed text is simply another key: nothing can
    go stale.
    """
    rules: list[Rule] = []
    for line_number, raw in enumerate((text or "").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"Rule {len(rules) + 1} (line {line_number})"
        if len(rules) == MAX_RULES:
            raise RuleError(f"{where}: at most {MAX_RULES} rules.")
        pattern, arrow, replacement = line.rpartition(ARROW)
        pattern, replacement = pattern.strip(), replacement.strip()
        if not arrow or not pattern:
            raise RuleError(
                f"{where}: write PATTERN {ARROW} REPLACEMENT, e.g. ^0044(\\d+)$ {ARROW} 44\\1."
            )
        if len(pattern) > MAX_PATTERN:
            raise RuleError(f"{where}: the pattern is longer than {MAX_PATTERN} characters.")
        try:
            regex = re2.compile(pattern, _OPTIONS)
        except re2.error as exc:
            raise RuleError(f"{where}: {pattern!r} is not an RE2 pattern: {_why(exc)}.") from None
        parts = _replacement_parts(replacement, regex.groups, where)
        rules.append(
            Rule(
                number=len(rules) + 1,
                line=line_number,
                pattern=pattern,
                replacement=replacement,
                parts=parts,
                regex=regex,
            )
        )
    patterns = None
    if len(rules) > 1:
        patterns = re2.Set.SearchSet(_OPTIONS)
        for rule in rules:
            patterns.Add(rule.pattern)
        try:
            patterns.Compile()
        except re2.error:
            raise RuleError(
                f"The {len(rules)} rules are too large together; use fewer or simpler rules."
            ) from None
    return Rules(rules=tuple(rules), patterns=patterns)


def _why(exc: Exception) -> str:
    detail = exc.args[0] if exc.args else ""
    if isinstance(detail, bytes):
        detail = detail.decode(errors="replace")
    detail = str(detail) or "invalid"
    if "invalid escape sequence: \\" in detail:
        detail += " (back-references need backtracking: RE2 has none)"
    elif "invalid perl operator: (?" in detail:
        detail += " (look-around needs backtracking: RE2 has none)"
    return detail


def _replacement_parts(replacement: str, groups: int, where: str) -> tuple[str | int, ...]:
    """A replacement split into literal digits and group numbers; refuses anything else."""
    if not replacement:
        raise RuleError(f"{where}: the replacement is empty; a rule must produce a number.")
    parts: list[str | int] = []
    position = 0
    for match in _REFERENCE.finditer(replacement):
        if match.start() > position:
            parts.append(replacement[position : match.start()])
        group = int(match[1])
        if group == 0:
            raise RuleError(f"{where}: \\0 is not a group of the pattern; use \\1 to \\9.")
        if group > groups:
            raise RuleError(
                f"{where}: the replacement refers to group \\{group}, but the pattern has "
                + (f"only {groups} group{'s' if groups != 1 else ''}." if groups else "no group.")
            )
        parts.append(group)
        position = match.end()
    if position < len(replacement):
        parts.append(replacement[position:])
    if replacement == "+":
        raise RuleError(f"{where}: the replacement '+' alone is no number; add digits or \\1.")
    for n, part in enumerate(parts):
        if isinstance(part, int):
            continue
        text = part[1:] if n == 0 and part.startswith("+") else part
        if text and not _DIGITS.fullmatch(text):
            raise RuleError(
                f"{where}: the replacement {replacement!r} may only add digits (and a leading "
                f"+) around group references such as \\1; {text!r} is not digits."
            )
    return tuple(parts)


@dataclass(frozen=True, slots=True)
class Translated:
    """A translated number and how it was reached, for the decision's trace."""

    number: str
    original: str
    how: str  # "national, country 33", "rule 2 of callee rules", ...

    @property
    def changed(self) -> bool:
        return self.number != self.original

    def describe(self, what: str) -> str:
        if not self.changed:
            return f"{what} {self.original} unchanged ({self.how})"
        return f"{what} {self.original} → {self.number} ({self.how})"


@dataclass(frozen=True, slots=True)
class DiallingContext:
    """How a customer dials: its country code and prefixes (all digits, each may be empty)."""

    country_code: str = ""
    national_prefix: str = ""
    international_prefix: str = ""

    def to_e164(self, number: str) -> tuple[str, str]:
        """E.164 digits of `number` (digits, maybe with a leading '+') and how.

        The international prefix is checked before the national one ("00" starts with
        "0"); a number with neither is taken as already international (E.164 digits).
        """
        if number.startswith("+"):
            return number[1:], "international, leading +"
        if self.international_prefix and number.startswith(self.international_prefix):
            return number[len(self.international_prefix) :], (
                f"international prefix {self.international_prefix}"
            )
        if self.country_code and self.national_prefix and number.startswith(self.national_prefix):
            return self.country_code + number[len(self.national_prefix) :], (
                f"national, country {self.country_code}"
            )
        return number, "no dialling prefix recognised: taken as E.164"


def normalise(
    number: str, *, context: DiallingContext, rules: str, what: str = "callee"
) -> Translated:
    """A customer's number as E.164 digits: its dialling context first, then its rules.

    `number` is the digits of a dialled number, maybe with a leading '+'. Raises
    TranslationFailed when the result is not a usable number.
    """
    digits, how = context.to_e164(number)
    steps = [how]
    result, rule = parse_rules(rules).first_match(digits)
    if rule is not None:
        steps.append(f"{_ordinal(rule)} of {what} rules")
        result = result.removeprefix("+")  # "+" is how E.164 is written, not a digit
    _check(result, number, steps, plus=False)
    return Translated(number=result, original=number, how=", then ".join(steps))


def to_carrier(
    number: str,
    *,
    number_format: str,
    context: DiallingContext,
    rules: str,
    what: str = "callee",
) -> Translated:
    """A number (E.164 digits, or as dialled) in a trunk's carrier's format, then its rules.

    NATIONAL writes numbers of the trunk's country with its national prefix and the
    others with its international prefix. Raises TranslationFailed when the result is
    not a usable number.
    """
    digits = number.removeprefix("+")
    fmt = NumberFormat(number_format)
    steps: list[str] = []
    if fmt is NumberFormat.AS_ROUTED:
        result = number
    elif fmt is NumberFormat.E164:
        result = digits
        steps.append("E.164 digits")
    elif fmt is NumberFormat.PLUS:
        result = "+" + digits
        steps.append("E.164 with +")
    elif (
        fmt is NumberFormat.NATIONAL
        and context.country_code
        and digits.startswith(context.country_code)
    ):
        result = context.national_prefix + digits[len(context.country_code) :]
        steps.append(f"national, country {context.country_code}")
    else:
        result = context.international_prefix + digits
        steps.append(f"international prefix {context.international_prefix or '(none)'}")
    translated, rule = parse_rules(rules).first_match(result)
    if rule is not None:
        steps.append(f"{_ordinal(rule)} of {what} rules")
        result = translated
    _check(result, number, steps, plus=True)
    return Translated(number=result, original=number, how=", then ".join(steps) or "as routed")


def _ordinal(rule: Rule) -> str:
    return f"rule {rule.number}"


def _check(result: str, original: str, steps: list[str], *, plus: bool) -> None:
    valid = _NUMBER if plus else _DIGITS
    if not result or not valid.fullmatch(result) or len(result.lstrip("+")) > MAX_NUMBER:
        what = "an empty number" if not result else f"{result!r}, not a number"
        if result and valid.fullmatch(result):
            what = f"{result!r}, longer than {MAX_NUMBER} digits"
        raise TranslationFailed(f"{original} gives {what} ({', then '.join(steps)})")


def is_number(text: str) -> bool:
    """Whether `text` is digits, maybe after a '+': what translation applies to."""
    return bool(_NUMBER.fullmatch(text or ""))


def validate_rules(text: str) -> None:
    """Raise RuleError when a rules text cannot be used (for the models' validators)."""
    parse_rules(text)


# --- Caller patterns of routes (routing.models.DialPrefix.caller_pattern) ------------


@functools.lru_cache(maxsize=4096)
def caller_pattern(pattern: str) -> object:
    """A route's caller pattern, compiled once per text (every row and call share it);
    raises RuleError saying why a pattern cannot be used."""
    if len(pattern) > MAX_PATTERN:
        raise RuleError(f"Caller pattern: longer than {MAX_PATTERN} characters.")
    if "\n" in pattern or "\r" in pattern:
        raise RuleError("Caller pattern: one line only.")
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        raise RuleError(
            f"Caller pattern: {pattern!r} is not an RE2 pattern: {_why(exc)}."
        ) from None


def caller_pattern_matches(pattern: str, caller: str | None) -> bool:
    """Whether the caller's digits (None: not a number) fully match `pattern`."""
    if caller is None or not _DIGITS.fullmatch(caller):
        return False
    try:
        return caller_pattern(pattern).fullmatch(caller) is not None
    except RuleError:
        return False  # refused at save; a stored bad pattern matches no caller
