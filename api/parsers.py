"""The API's body parsers: strict JSON, bounded before it is parsed, no NUL anywhere.

PostgreSQL text cannot hold a NUL character: a NUL that reached a lookup or a save
would be a 500. Every body the API parses goes through these parsers (settings'
DEFAULT_PARSER_CLASSES, and the routing endpoint's BoundedJSONParser), which refuse
one in any string or key with a 400 naming where it was, in DRF's field-error shape.
Query strings are checked by config.middleware.RefuseNulMiddleware.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.validators import ProhibitNullCharactersValidator
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import FormParser as DRFFormParser
from rest_framework.parsers import JSONParser as DRFJSONParser
from rest_framework.parsers import MultiPartParser as DRFMultiPartParser
from rest_framework.settings import api_settings

# A routing request is well under 2 KB; anything near this is not one.
MAX_BODY_BYTES = 16 * 1024

NUL_MESSAGE = str(ProhibitNullCharactersValidator.message)
NUL_KEY_MESSAGE = "Null characters are not allowed in a key."


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def nul_errors(value: Any) -> Any:
    """Where `value` holds a NUL, as DRF field errors (`{"targets": {0: {"trunk": [...]}}}`).

    None when there is none. Lists are reported by position, as DialPrefixSerializer
    reports its targets.
    """
    if isinstance(value, str):
        return [NUL_MESSAGE] if "\x00" in value else None
    if isinstance(value, dict):
        errors: dict[Any, Any] = {}
        for key, item in value.items():
            if "\x00" in key:
                errors[key] = [NUL_KEY_MESSAGE]
            elif (error := nul_errors(item)) is not None:
                errors[key] = error
        return errors or None
    if isinstance(value, list):
        errors = {i: e for i, item in enumerate(value) if (e := nul_errors(item)) is not None}
        return errors or None
    return None


def parse_json(data: bytes, *, max_bytes: int | None) -> Any:
    """The JSON document in `data`, or a ParseError/ValidationError (400)."""
    if max_bytes is not None and len(data) > max_bytes:
        raise ParseError(f"Request body too large: at most {max_bytes} bytes.")
    try:
        document = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ParseError(f"JSON parse error - {exc}") from None
    # A NUL can only be in a JSON text as the escape \u0000 (a raw one is invalid JSON),
    # so the common body skips the walk.
    if b"\\u0000" in data and (errors := nul_errors(document)) is not None:
        if not isinstance(document, dict):
            errors = {api_settings.NON_FIELD_ERRORS_KEY: [NUL_MESSAGE]}
        raise ValidationError(errors)
    return document


def _read(stream, max_bytes: int | None) -> bytes:
    if stream is None:
        return b""
    return stream.read() if max_bytes is None else stream.read(max_bytes + 1)


def _declared_too_large(parser_context: dict | None, max_bytes: int | None) -> bool:
    request = (parser_context or {}).get("request")
    declared = request.META.get("CONTENT_LENGTH") if request is not None else None
    return bool(
        max_bytes is not None and declared and declared.isdigit() and int(declared) > max_bytes
    )


class JSONParser(DRFJSONParser):
    """The REST API's JSON parser (DEFAULT_PARSER_CLASSES): DRF's, plus the NUL check and
    Django's DATA_UPLOAD_MAX_MEMORY_SIZE as the body limit (DRF reads the stream itself,
    so Django's own check never sees an API body)."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        max_bytes = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if _declared_too_large(parser_context, max_bytes):
            raise ParseError(f"Request body too large: at most {max_bytes} bytes.")
        return parse_json(_read(stream, max_bytes), max_bytes=max_bytes)


class BoundedJSONParser(JSONParser):
    """The routing endpoint's: at most MAX_BODY_BYTES, whatever the Content-Type.

    libcurl (under Kamailio's http_client) sends a form content type when the config
    forgets the header, and the body is JSON anyway. Form data is never parsed.
    """

    media_type = "*/*"
    max_bytes = MAX_BODY_BYTES

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        if _declared_too_large(parser_context, self.max_bytes):
            raise ParseError(f"Request body too large: at most {self.max_bytes} bytes.")
        return parse_json(_read(stream, self.max_bytes), max_bytes=self.max_bytes)


def _refuse_nul_in_form(data) -> None:
    errors = nul_errors(dict(data.lists()))
    if errors is not None:
        # A form field is a list of values; name the field, not the position.
        raise ValidationError(
            {
                key: error if error == [NUL_KEY_MESSAGE] else [NUL_MESSAGE]
                for key, error in errors.items()
            }
        )


class FormParser(DRFFormParser):
    """DRF's (the browsable API's forms), refusing a NUL in any field."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        _refuse_nul_in_form(data)
        return data


class MultiPartParser(DRFMultiPartParser):
    """DRF's, refusing a NUL in any (non-file) field."""

    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        _refuse_nul_in_form(parsed.data)
        return parsed
