"""Identity-based policy evaluation as IAM does it: an explicit Deny wins, then any Allow, else
the implicit deny; actions match case-insensitively, ``*`` and ``?`` are wildcards, ``NotAction``
and ``NotResource`` invert, conditions are read against the request's context.

moto ships an evaluator, but it checks resources only for the services whose handlers compute
one (a table-scoped DynamoDB grant is refused) and turns an unmet condition of an Allow into an
explicit deny; both would fail calls AWS allows, so dorc decides here and uses moto for the rest
(who signed the request, which operation it is).

What dorc cannot know stays lenient and is said so in the README: a resource it cannot name
(``None``) matches any ``Resource``; a condition key absent from the context dorc builds leaves an
Allow applying and a Deny not.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Iterable

ALLOWED, IMPLICIT_DENY, EXPLICIT_DENY = "allowed", "implicit", "explicit"


@dataclass(frozen=True)
class Ask:
    """One permission a request needs: ``s3:GetObject`` on ``arn:aws:s3:::b/k`` (``resource``
    ``None``: dorc cannot name it), with the condition keys the request carries."""

    action: str
    resource: str | None
    context: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@lru_cache(maxsize=4096)
def _pattern(text: str, ignore_case: bool) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(text), re.IGNORECASE if ignore_case else 0)


def _like(pattern: str, value: str, ignore_case: bool = False) -> bool:
    # fnmatch's [] classes are not IAM's: escape them so only * and ? are wildcards
    escaped = pattern.replace("[", "[[]")
    return _pattern(escaped, ignore_case).match(value) is not None


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _action_matches(statement: dict[str, Any], action: str) -> bool:
    if "NotAction" in statement:
        return not any(_like(p, action, True) for p in _listed(statement["NotAction"]))
    return any(_like(p, action, True) for p in _listed(statement.get("Action", [])))


def _resource_matches(statement: dict[str, Any], resource: str | None) -> bool:
    if resource is None:  # not known here: lenient
        return True
    if "NotResource" in statement:
        return not any(_like(p, resource) for p in _listed(statement["NotResource"]))
    return any(_like(p, resource) for p in _listed(statement.get("Resource", [])))


class _Unknown(Exception):
    """A condition dorc cannot evaluate (an operator or a key it does not know)."""


def _number(v: Any) -> float:
    return float(v)


def _date(v: Any) -> float:
    if isinstance(v, (int, float)) or (isinstance(v, str) and v.isdigit()):
        return float(v)
    return datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()


_COMPARE = {
    "StringEquals": lambda a, b: a == b,
    "StringEqualsIgnoreCase": lambda a, b: a.lower() == b.lower(),
    "StringLike": lambda a, b: _like(b, a),
    "NumericEquals": lambda a, b: _number(a) == _number(b),
    "NumericLessThan": lambda a, b: _number(a) < _number(b),
    "NumericLessThanEquals": lambda a, b: _number(a) <= _number(b),
    "NumericGreaterThan": lambda a, b: _number(a) > _number(b),
    "NumericGreaterThanEquals": lambda a, b: _number(a) >= _number(b),
    "DateEquals": lambda a, b: _date(a) == _date(b),
    "DateLessThan": lambda a, b: _date(a) < _date(b),
    "DateLessThanEquals": lambda a, b: _date(a) <= _date(b),
    "DateGreaterThan": lambda a, b: _date(a) > _date(b),
    "DateGreaterThanEquals": lambda a, b: _date(a) >= _date(b),
    "Bool": lambda a, b: str(a).lower() == str(b).lower(),
    "ArnEquals": lambda a, b: _like(b, a),
    "ArnLike": lambda a, b: _like(b, a),
}
_NEGATED = {"StringNotEquals": "StringEquals", "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
            "StringNotLike": "StringLike", "NumericNotEquals": "NumericEquals", "DateNotEquals": "DateEquals",
            "ArnNotEquals": "ArnEquals", "ArnNotLike": "ArnLike"}


def _condition(operator: str, key: str, expected: Any, context: dict[str, Any]) -> bool:
    qualifier, _, op = operator.rpartition(":")
    if_exists = op.endswith("IfExists")
    op = op.removesuffix("IfExists")
    present = key.lower() in context
    if op == "Null":
        wants_absent = str(_listed(expected)[0]).lower() == "true"
        return (not present) == wants_absent
    if not present:
        if key.lower() not in _KNOWN_KEYS:
            raise _Unknown(key)
        return if_exists or op in _NEGATED  # IAM: a negated operator is met by an absent key
    negated = op in _NEGATED
    compare = _COMPARE.get(_NEGATED.get(op, op))
    if compare is None:
        raise _Unknown(operator)
    values = _listed(context[key.lower()])
    wanted = [str(e) for e in _listed(expected)]

    def one(value: Any) -> bool:
        try:
            hit = any(compare(str(value), e) for e in wanted)
        except (TypeError, ValueError):
            hit = False
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(one(v) for v in values)
    return any(one(v) for v in values)  # ForAnyValue, and single-valued keys


def _conditions_met(statement: dict[str, Any], context: dict[str, Any]) -> bool | None:
    """True/False, or None when dorc cannot tell."""
    try:
        return all(_condition(op, key, expected, context)
                   for op, body in (statement.get("Condition") or {}).items()
                   for key, expected in body.items())
    except _Unknown:
        return None


# Keys dorc puts in every context (``asks`` adds the request's own): an absent one of these is
# really absent; any other absent key is one dorc cannot know.
_KNOWN_KEYS = {"aws:requestedregion", "aws:principalarn", "aws:principalaccount", "aws:principaltype",
               "aws:securetransport", "aws:currenttime", "aws:epochtime", "aws:userid", "aws:username",
               "s3:prefix", "s3:delimiter", "s3:max-keys"}


def base_context(*, region: str, principal_arn: str, account: str) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    return {"aws:requestedregion": region, "aws:principalarn": principal_arn, "aws:principalaccount": account,
            "aws:principaltype": "AssumedRole", "aws:securetransport": "true",  # SDKs use HTTPS in AWS
            "aws:currenttime": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "aws:epochtime": str(int(now.timestamp()))}


@dataclass
class Decision:
    outcome: str  # ALLOWED, IMPLICIT_DENY or EXPLICIT_DENY
    ask: Ask

    @property
    def allowed(self) -> bool:
        return self.outcome == ALLOWED

    def message(self, principal_arn: str) -> str:
        """AWS's wording, so the error reads as it will in AWS."""
        where = f' on resource: "{self.ask.resource}"' if self.ask.resource else ""
        why = ("with an explicit deny in an identity-based policy" if self.outcome == EXPLICIT_DENY
               else f"because no identity-based policy allows the {self.ask.action} action")
        return f"User: {principal_arn} is not authorized to perform: {self.ask.action}{where} {why}"


def _statements(documents: Iterable[Any]) -> list[dict[str, Any]]:
    out = []
    for doc in documents:
        if isinstance(doc, str):
            doc = json.loads(doc)
        out += [s for s in _listed(doc.get("Statement", [])) if isinstance(s, dict)]
    return out


def evaluate(documents: Iterable[Any], ask: Ask, context: dict[str, Any] | None = None) -> Decision:
    """``documents``: the role's policy documents (dicts or JSON text)."""
    ctx = {k.lower(): v for k, v in {**(context or {}), **ask.context}.items()}
    allowed = False
    for s in _statements(documents):
        if not (_action_matches(s, ask.action) and _resource_matches(s, ask.resource)):
            continue
        met = _conditions_met(s, ctx)
        if s.get("Effect") == "Deny":
            if met:  # an unknowable condition does not deny
                return Decision(EXPLICIT_DENY, ask)
        elif met is not False:  # met, or unknowable: lenient
            allowed = True
    return Decision(ALLOWED if allowed else IMPLICIT_DENY, ask)


def decide(documents: Iterable[Any], asks: Iterable[Ask], context: dict[str, Any] | None = None) -> Decision | None:
    """The first refused ask, or None when the role may do all of them."""
    docs = list(documents)
    for ask in asks:
        d = evaluate(docs, ask, context)
        if not d.allowed:
            return d
    return None
