"""The JSON rule language segment, profile and campaign share (pure): the schema, its
limits, and a per-record evaluator, over each service's field catalogue.

A rule is one of::

    {"all": [rule, ...]}          every sub-rule holds
    {"any": [rule, ...]}          at least one holds
    {"not": rule}                 the sub-rule does not hold
    {"field": F, "op": OP, "value": V}

Comparison ops: ``eq ne gt gte lt lte`` (one value), ``between`` ([low, high], both
inclusive), ``in`` / ``not_in`` (a list). On list fields: ``contains`` (one value),
``contains_any`` / ``contains_all`` (a list). Boolean fields take ``eq`` / ``ne``. Money
literals are decimal amounts with at most 4 decimal places; dates are ISO 8601
timestamps with an offset. A record missing a value never satisfies a comparison on it
(``ne`` and ``not_in`` included), so ``{"not": ...}`` is how to say "not known to be".

:data:`Rule` is the shape alone. A service takes ``Annotated[Rule, CATALOGUE]``: its
:class:`Catalogue` adds the limits, checks every condition's field, op and literals, and
describes the fields in the OpenAPI schema. A bad rule is a ValidationError whose errors
each name one place in the rule (``all[1].any[0].field``), never a list of every union
branch that failed.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import InitErrorDetails, PydanticCustomError, core_schema

from shared.regions import city_name, province_name
from shared.vocabulary import normalize_channel, normalize_gender

#: how deep all / any / not may nest (a bare condition is one level)
MAX_DEPTH = 16
#: conditions and all / any / not nodes in one rule
MAX_PARTS = 256
#: values in one condition's list (``in``, ``not_in``, ``contains_any``, ``contains_all``)
MAX_VALUES = 10_000

Op = Literal[
    "eq", "ne", "gt", "gte", "lt", "lte", "between", "in", "not_in",
    "contains", "contains_any", "contains_all",
]  # fmt: skip
Kind = Literal["number", "money", "date", "text", "boolean", "list"]

COMPARISON_OPS: tuple[Op, ...] = ("eq", "ne", "gt", "gte", "lt", "lte", "between", "in", "not_in")
LIST_OPS: tuple[Op, ...] = ("contains", "contains_any", "contains_all")
OPS_BY_KIND: dict[Kind, tuple[Op, ...]] = {
    "number": COMPARISON_OPS,
    "money": COMPARISON_OPS,
    "date": COMPARISON_OPS,
    "text": COMPARISON_OPS,
    "boolean": ("eq", "ne"),
    "list": LIST_OPS,
}
#: ops whose value is a list (``between``: exactly [low, high])
LIST_VALUED_OPS = frozenset({"between", "in", "not_in", "contains_any", "contains_all"})


def _gender_literal(value: str) -> str:
    return normalize_gender(value) or value


def _channel_literal(value: str) -> str:
    return normalize_channel(value) or value


#: Text fields whose literals are normalised as every entry point normalises the values
#: (``province eq 浙江`` matches 浙江省, as profile search does; ``gender eq 男`` matches male),
#: in whichever catalogue has a field of that name.
TEXT_LITERAL_NORMALIZERS: dict[str, Callable[[str], str]] = {
    "province": province_name,
    "city": city_name,
    "gender": _gender_literal,
    "preferred_channel": _channel_literal,
}

_SHAPE = "a rule is one of {all: [rules]}, {any: [rules]}, {not: rule} or {field, op, value}"


class _Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Condition(_Node):
    """``{field, op, value}``: which fields exist is the service's catalogue."""

    field: str = Field(min_length=1, max_length=100)
    op: Op
    value: Any

    @field_validator("value")
    @classmethod
    def _one_or_many(cls, value: Any, info: ValidationInfo) -> Any:
        op = info.data.get("op")
        if op is None:  # the op itself is wrong: that is the one error to report
            return value
        if op == "between" and not (isinstance(value, list) and len(value) == 2):
            raise PydanticCustomError("rule.value", "between takes [low, high]")
        if op in LIST_VALUED_OPS and not isinstance(value, list):
            raise PydanticCustomError("rule.value", f"{op} takes a list")
        if op not in LIST_VALUED_OPS and isinstance(value, (list, dict)):
            hint = " (contains_any takes a list)" if op == "contains" else ""
            raise PydanticCustomError("rule.value", f"{op} takes one value{hint}")
        if isinstance(value, list) and len(value) > MAX_VALUES:
            raise PydanticCustomError("rule.value", f"{op} takes at most {MAX_VALUES} values")
        return value


class AllOf(_Node):
    all: list[Rule] = Field(min_length=1)


class AnyOf(_Node):
    any: list[Rule] = Field(min_length=1)


class NotRule(_Node):
    model_config = ConfigDict(populate_by_name=True)

    not_: Rule = Field(alias="not")


_BRANCHES: dict[str, type[_Node]] = {
    "all": AllOf,
    "any": AnyOf,
    "not": NotRule,
    "not_": NotRule,
    "field": Condition,
    "op": Condition,
    "value": Condition,
}


def _one_branch(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # Validating against the plain union would report every branch that failed (a bad
    # condition nested two deep: a dozen errors); the keys say which branch is meant, so
    # only that one is tried and its errors keep their own paths.
    if isinstance(value, _Node):
        return handler(value)
    if not isinstance(value, dict):
        raise PydanticCustomError("rule.shape", _SHAPE)
    branches = {_BRANCHES[key] for key in value if key in _BRANCHES}
    if len(branches) != 1:
        raise PydanticCustomError("rule.shape", _SHAPE)
    return branches.pop().model_validate(value)


#: The shape of a rule (no catalogue: any field name passes; see :class:`Catalogue`)
Rule = Annotated[Union[AllOf, AnyOf, NotRule, Condition], WrapValidator(_one_branch)]  # noqa: UP007 - recursive alias needs Union

AllOf.model_rebuild()
AnyOf.model_rebuild()
NotRule.model_rebuild()

Record = Mapping[str, Any]
Predicate = Callable[[Record], bool]
Problem = tuple[tuple[str | int, ...], str, str, Any]  # loc, code, message, input

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


class Catalogue:
    """One service's rule fields: each field's kind (so its ops and literals), and where
    a record holds its value. Used as ``Annotated[Rule, CATALOGUE]``, it validates a rule
    against the fields; :meth:`predicate` evaluates one over records."""

    def __init__(
        self,
        *,
        numbers: Iterable[str] = (),
        money: Iterable[str] = (),
        dates: Iterable[str] = (),
        text: Iterable[str] = (),
        booleans: Iterable[str] = (),
        lists: Iterable[str] = (),
        keys: Mapping[str, str] | None = None,
        money_e4: bool = False,
    ) -> None:
        """``keys``: the record key of a field named otherwise; ``money_e4``: records hold
        money as integer 1/10,000 units (literals are converted to match), not Decimals."""
        groups: list[tuple[Kind, Iterable[str]]] = [
            ("number", numbers),
            ("money", money),
            ("date", dates),
            ("text", text),
            ("boolean", booleans),
            ("list", lists),
        ]
        self.kinds: dict[str, Kind] = {}
        for kind, names in groups:
            for name in names:
                if name in self.kinds:
                    raise ValueError(f"field {name!r} is listed twice")
                self.kinds[name] = kind
        self.names = sorted(self.kinds)
        self.keys = dict(keys or {})
        self.money_e4 = money_e4
        self._adapter: TypeAdapter[Rule] | None = None

    # as Annotated metadata: the limits, then the shape, then the fields

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_wrap_validator_function(self._validate, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(schema), "description": self.describe()}

    def _validate(self, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if not isinstance(value, _Node):
            # before validating: a deep rule would otherwise be recursed into first
            _raise(_size_problems(value))
        rule = handler(value)
        _raise(self.problems(rule))
        return rule

    def parse(self, raw: Any) -> Rule:
        """Validate a JSON rule against this catalogue (raises pydantic.ValidationError)."""
        if self._adapter is None:
            self._adapter = TypeAdapter(Annotated[Rule, self])
        return self._adapter.validate_python(raw)

    def describe(self) -> str:
        """The fields by kind and the ops each kind takes (for API documentation)."""
        by_ops: dict[tuple[Op, ...], list[str]] = {}
        for kind, label in _KIND_LABELS.items():
            names = [name for name in self.names if self.kinds[name] == kind]
            if names:
                by_ops.setdefault(OPS_BY_KIND[kind], []).append(f"{label}: {' '.join(names)}")
        sentences = [f"{'; '.join(kinds)} (ops {' '.join(ops)})" for ops, kinds in by_ops.items()]
        return "all / any / not over {field, op, value}. " + " ".join(
            f"{sentence[0].upper()}{sentence[1:]}." for sentence in sentences
        )

    # checking

    def problems(self, rule: Rule, path: tuple[str | int, ...] = ()) -> Iterator[Problem]:
        """Each condition whose field, op or literal does not fit this catalogue."""
        if isinstance(rule, AllOf):
            for index, sub in enumerate(rule.all):
                yield from self.problems(sub, (*path, "all", index))
        elif isinstance(rule, AnyOf):
            for index, sub in enumerate(rule.any):
                yield from self.problems(sub, (*path, "any", index))
        elif isinstance(rule, NotRule):
            yield from self.problems(rule.not_, (*path, "not"))
        else:
            problem = self._condition_problem(rule)
            if problem is not None:
                where, code, message, given = problem
                yield (*path, *where), code, message, given

    def _condition_problem(self, cond: Condition) -> Problem | None:
        kind = self.kinds.get(cond.field)
        if kind is None:
            message = f"unknown field {cond.field!r}; known: {', '.join(self.names)}"
            return ("field",), "rule.field", message, cond.field
        if cond.op not in OPS_BY_KIND[kind]:
            return ("op",), "rule.op", self._op_message(cond.field, kind, cond.op), cond.op
        many = isinstance(cond.value, list)
        for index, item in enumerate(cond.value if many else [cond.value]):
            try:
                self.literal(cond.field, item)
            except ValueError as exc:
                where: tuple[str | int, ...] = ("value", index) if many else ("value",)
                return where, "rule.value", str(exc), item
        return None

    def _op_message(self, field: str, kind: Kind, op: str) -> str:
        if op in LIST_OPS:
            lists = [name for name in self.names if self.kinds[name] == "list"]
            return f"{op} applies to {_either(lists)} only" if lists else f"{op} applies to lists"
        return f"{field} takes {_either(OPS_BY_KIND[kind])}"

    def literal(self, field: str, value: Any) -> Any:
        """A rule literal as the records of this catalogue hold it (raises ValueError)."""
        kind = self.kinds[field]
        if kind == "money":
            amount = _amount(field, value)
            return int(amount.scaleb(4)) if self.money_e4 else amount
        if kind == "date":
            return _timestamp(field, value)
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{field} takes numbers, not {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{field} takes finite numbers, not {value!r}")
            return value
        if kind == "boolean":
            if not isinstance(value, bool):
                raise ValueError(f"{field} takes true or false")
            return value
        if not isinstance(value, str):
            raise ValueError(f"{field} takes strings, not {value!r}")
        normalize = TEXT_LITERAL_NORMALIZERS.get(field)
        return value if normalize is None else normalize(value.strip())

    # evaluating

    def key(self, field: str) -> str:
        """Where a record holds ``field``."""
        return self.keys.get(field, field)

    def matches(self, rule: Rule, record: Record) -> bool:
        """Whether one record satisfies ``rule`` (compile once with :meth:`predicate` to
        test many records)."""
        return self.predicate(rule)(record)

    def predicate(self, rule: Rule) -> Predicate:
        """``rule`` compiled into a test of one record (a mapping of record keys to values):
        literals are converted once, not per record."""
        if isinstance(rule, AllOf):
            every = [self.predicate(sub) for sub in rule.all]
            return lambda record: all(test(record) for test in every)
        if isinstance(rule, AnyOf):
            some = [self.predicate(sub) for sub in rule.any]
            return lambda record: any(test(record) for test in some)
        if isinstance(rule, NotRule):
            inner = self.predicate(rule.not_)
            return lambda record: not inner(record)
        return self._condition_predicate(rule)

    def _condition_predicate(self, cond: Condition) -> Predicate:
        key, kind, op = self.key(cond.field), self.kinds[cond.field], cond.op
        if kind == "list":
            if op == "contains":
                needle = cond.value
                return lambda record: needle in (record.get(key) or ())
            wanted = set(cond.value)
            if op == "contains_any":
                return lambda record: not wanted.isdisjoint(record.get(key) or ())
            return lambda record: wanted.issubset(record.get(key) or ())
        # records may hold money as text and times as ISO strings (a JSON document's facts)
        read = None if kind == "money" and self.money_e4 else _READERS.get(kind)

        if op == "between":
            low, high = (self.literal(cond.field, v) for v in cond.value)

            def between(record: Record) -> bool:
                value = record.get(key)
                if value is None:
                    return False
                if read is not None:
                    value = read(value)
                return bool(low <= value <= high)

            return between
        if op in ("in", "not_in"):
            members = {self.literal(cond.field, v) for v in cond.value}
            negate = op == "not_in"

            def is_in(record: Record) -> bool:
                value = record.get(key)
                if value is None:
                    return False
                if read is not None:
                    value = read(value)
                return (value in members) != negate

            return is_in
        compare, literal = _COMPARE[op], self.literal(cond.field, cond.value)

        def scalar(record: Record) -> bool:
            value = record.get(key)
            if value is None:
                return False
            if read is not None:
                value = read(value)
            return bool(compare(value, literal))

        return scalar


_KIND_LABELS: dict[Kind, str] = {
    "number": "numbers",
    "money": "money (decimal strings)",
    "date": "dates (ISO 8601 with offset)",
    "text": "text",
    "boolean": "booleans",
    "list": "lists",
}


def _either(options: Iterable[str]) -> str:
    *rest, last = options
    return f"{', '.join(rest)} or {last}" if rest else last


def _amount(field: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise ValueError(f"{field} takes decimal amounts, not {value!r}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"{field} takes decimal amounts, not {value!r}") from exc
    if not amount.is_finite():
        raise ValueError(f"{field} takes decimal amounts, not {value!r}")
    units = amount.scaleb(4)
    if units != units.to_integral_value():
        raise ValueError(f"{field} takes amounts with at most 4 decimal places, not {value!r}")
    return amount


def _timestamp(field: str, value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ValueError(f"{field} takes ISO 8601 timestamps with an offset")
    return parsed


def _record_amount(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _record_time(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


_READERS: dict[Kind, Callable[[Any], Any]] = {"money": _record_amount, "date": _record_time}


def _size_problems(raw: Any) -> Iterator[Problem]:
    """Depth and size of a JSON rule, walked without recursion: the rule is not validated
    yet and may nest far beyond what recursion could follow."""
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(raw, 1, ())]
    parts = 0
    while stack:
        node, depth, path = stack.pop()
        if not isinstance(node, dict):
            continue
        if depth > MAX_DEPTH:
            yield path, "rule.too_deep", f"rules nest at most {MAX_DEPTH} levels deep", None
            return
        parts += 1
        if parts > MAX_PARTS:
            message = f"a rule has at most {MAX_PARTS} parts (conditions and all / any / not)"
            yield (), "rule.too_large", message, None
            return
        children: list[tuple[Any, int, tuple[str | int, ...]]] = []
        for key in ("all", "any"):
            subs = node.get(key)
            if isinstance(subs, list):
                children += [(sub, depth + 1, (*path, key, i)) for i, sub in enumerate(subs)]
        if "not" in node:
            children.append((node["not"], depth + 1, (*path, "not")))
        stack.extend(reversed(children))  # popped in the rule's own order


def _raise(problems: Iterable[Problem]) -> None:
    errors = [
        InitErrorDetails(type=PydanticCustomError(code, message), loc=loc, input=given)
        for loc, code, message, given in problems
    ]
    if errors:
        # raised inside a validator, these become errors at their own paths below it
        raise ValidationError.from_exception_data("Rule", errors)
