"""Errors as RFC 9457 problem details (`application/problem+json`), JSON-safe values, and the
JSON answer every endpoint sends."""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import msgspec
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_TYPE = "application/problem+json"


def _encodable(value: Any) -> Any:
    """msgspec's hook for what it does not know: numpy scalars, pandas timestamps, else text."""
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime()
    return str(value)


_ENCODER = msgspec.json.Encoder(enc_hook=_encodable, decimal_format="number")


class Answer(JSONResponse):
    """A JSON answer encoded by msgspec: what `clean` + json.dumps give (NaN/inf -> null, dates
    ISO 8601, tuples and sets as lists), in ~0.05 ms instead of ~0.6 ms for ten 360 rows — a
    look-up's whole server time is ~2 ms. Differences, none of which the warehouse's tables hold
    (tests compare every table): a UTC timestamp ends in Z, bytes are base64."""

    def render(self, content: Any) -> bytes:
        return _ENCODER.encode(content)


class Problem(Exception):
    """An error the client can act on: status, short title, a detail naming what was wrong."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any):
        super().__init__(detail)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra


def problem_response(status: int, title: str, detail: str, instance: str = "", **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail,
            "instance": instance, **extra}
    headers = {"WWW-Authenticate": 'Bearer realm="ucv"'} if status == 401 else None
    return JSONResponse(clean(body), status_code=status, media_type=PROBLEM_TYPE, headers=headers)


def install(app) -> None:
    """Every error the app can raise answers as a problem document; none leaks a traceback."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return problem_response(exc.status, exc.title, exc.detail, request.url.path, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = [{"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
                  for e in exc.errors()]
        detail = "; ".join(f"{e['where']}: {e['problem']}" for e in errors[:5])
        return problem_response(422, "Invalid request", detail, request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        titles = {404: "Not found", 405: "Method not allowed", 401: "Not authenticated",
                  403: "Forbidden", 413: "Request too large"}
        return problem_response(exc.status_code, titles.get(exc.status_code, "Error"),
                                str(exc.detail), request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        import logging

        logging.getLogger(__name__).exception("unexpected error on %s", request.url.path)
        return problem_response(500, "Internal error", "the service failed; see its log",
                                request.url.path)


def clean(value: Any) -> Any:
    """Values JSON can carry: NaN/inf become null, dates ISO strings, tuples lists."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [clean(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
