"""Event views: a consumer decodes only the fields it reads.

Every consumer used to validate each event it read into the whole model: an
``order.recorded`` costs ~10 us of pydantic per consumer, most of it on fields (items,
buyer, address, warnings) that campaign and segment never read. A *view* is an envelope
class with the same ``type`` and topic whose ``data`` declares only the fields its
consumer reads, each exactly as the full model declares it (type, default, alias), so
pydantic still validates every field the consumer uses and skips the rest of the JSON.
What a view cannot see: a record malformed only in fields its consumer never reads is
applied by that consumer (a consumer decoding the full model dead-letters it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Field, TypeAdapter

from shared.events import EVENT_TYPES, SCHEMA_VERSION, EnvelopeBase, Payload, decode_event


class AddressRegion(Payload):
    """A view of :class:`Address`: its province and city."""

    province: str | None = None
    city: str | None = None


def check_view(view: type[BaseModel], full: type[BaseModel]) -> None:
    """Raise ``TypeError`` unless every field of ``view`` is declared by ``full`` the same
    way (a nested model may itself be a view of the full model's)."""
    for name, field in view.model_fields.items():
        model = full.model_fields.get(name)
        if model is None:
            raise TypeError(f"{view.__name__}.{name}: {full.__name__} has no such field")
        same = (
            field.alias == model.alias
            and field.is_required() == model.is_required()
            and _default(field) == _default(model)
            and _compatible(field.annotation, model.annotation)
        )
        if not same:
            raise TypeError(f"{view.__name__}.{name} is not declared as {full.__name__} has it")
    for name, field in full.model_fields.items():
        if name not in view.model_fields and field.is_required():
            raise TypeError(f"{view.__name__} leaves out the required {full.__name__}.{name}")


def _default(field: Any) -> Any:
    return (field.default, field.default_factory)


def _compatible(view: Any, full: Any) -> bool:
    if view == full:
        return True
    if isinstance(view, type) and issubclass(view, BaseModel):
        if not (isinstance(full, type) and issubclass(full, BaseModel)):
            return False
        check_view(view, full)
        return True
    view_args, full_args = get_args(view), get_args(full)
    return (
        get_origin(view) is not None
        and get_origin(view) == get_origin(full)
        and len(view_args) == len(full_args)
        and all(_compatible(v, f) for v, f in zip(view_args, full_args, strict=True))
    )


def view_decoder(views: Sequence[type[EnvelopeBase]]) -> Callable[[bytes | str], Any]:
    """:func:`decode_event` with the event types of ``views`` decoded as those views.

    Each view is checked against its event class (:func:`check_view`). An event whose
    ``schema_version`` is not the one the views were written for is decoded in full.
    """
    by_type = {}
    for view in views:
        event_type = view.model_fields["type"].default
        full = EVENT_TYPES.get(event_type)
        if full is None or view.topic != full.topic:
            raise TypeError(f"{view.__name__} is not a view of an event on its topic")
        check_view(view, full)
        by_type[event_type] = view
    if not by_type:
        return decode_event
    classes = tuple(by_type.get(t, cls) for t, cls in EVENT_TYPES.items())
    union: Any = Annotated[Union[classes], Field(discriminator="type")]  # noqa: UP007
    adapter: TypeAdapter[Any] = TypeAdapter(union)
    validate = adapter.validate_json

    def decode(raw: bytes | str) -> Any:
        event = validate(raw)
        if event.schema_version != SCHEMA_VERSION:
            return decode_event(raw)
        return event

    return decode
