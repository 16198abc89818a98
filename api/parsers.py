"""The routing endpoint's body parser: JSON only, bounded before it is parsed."""

from __future__ import annotations

import json
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

# A routing request is well under 2 KB; anything near this is not one.
MAX_BODY_BYTES = 16 * 1024


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class BoundedJSONParser(BaseParser):
    """Reads at most MAX_BODY_BYTES, then strict JSON (no NaN/Infinity).

    It accepts any Content-Type: libcurl (under Kamailio's http_client) sends a form
    content type when the config forgets the header, and the body is JSON anyway.
    Form data is never parsed.
    """

    media_type = "*/*"
    max_bytes = MAX_BODY_BYTES

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise ParseError(f"Request body too large: at most {self.max_bytes} bytes.")
        data = stream.read(self.max_bytes + 1) if stream is not None else b""
        if len(data) > self.max_bytes:
            raise ParseError(f"Request body too large: at most {self.max_bytes} bytes.")
        try:
            return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
