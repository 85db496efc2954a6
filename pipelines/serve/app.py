"""The HTTP service: real-time resolve, customer look-ups, the review queue and steward decisions.

JSON API under token auth (`Authorization: Bearer <token>`); OpenAPI at `/openapi.json`; the
steward workbench (server-rendered pages, `pipelines/serve/workbench.py`) under `/workbench`.
Every request works on one warehouse version from start to end (`warehouse.WarehouseHolder`).
"""

# No `from __future__ import annotations`: FastAPI reads the dependency annotations at run time.
import logging
import secrets
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from pipelines.serve import problems
from pipelines.serve.config import ServeConfig
from pipelines.serve.problems import Answer, Problem
from pipelines.serve.warehouse import SUMMARY_COLUMNS, WarehouseHolder, WarehouseVersion

log = logging.getLogger(__name__)

MAX_FIELDS = 200
MAX_VALUE_CHARS = 2000
CANONICAL = "canonical"
SHOWN_CANONICAL = ("party_type", "given_name_norm", "family_name_norm", "name_native", "birth_date",
                   "org_name_norm", "registration_id", "national_id", "phone_mobile", "phone_landline",
                   "email", "postcode", "city", "country")
LOOKUP_KEYS = {"phone": "phone", "email": "email", "policy": "policy",
               "national-id": "national_id", "name": "name"}


class ResolveRequest(BaseModel):
    """One record to resolve: in a source system's own shape, or already canonical."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(..., min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$",
                        description="source system whose mapping reads the record (sales, underwriting, "
                                    "servicing, claims, ...), or 'canonical' for a canonical record")
    record: dict[str, Any] = Field(..., description="field -> value, as the source writes it (JSON Lines "
                                                    "sources may nest objects and lists, up to 3 levels)")
    top_k: int = Field(5, ge=1, le=50, description="how many customers to return")

    @field_validator("record")
    @classmethod
    def _bounded(cls, record: dict[str, Any]) -> dict[str, Any]:
        if not record:
            raise ValueError("the record has no fields")
        budget = [MAX_FIELDS]
        for key, value in record.items():
            _check_value(key, value, depth=1, budget=budget)
        return record


def _check_value(key: str, value: Any, depth: int, budget: list[int]) -> None:
    """Bounded JSON: names 1-128 characters, strings up to MAX_VALUE_CHARS, 3 levels, MAX_FIELDS values."""
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError(f"at most {MAX_FIELDS} values in a record")
    if not key or len(key) > 128:
        raise ValueError("field names are 1-128 characters")
    if isinstance(value, str):
        if len(value) > MAX_VALUE_CHARS:
            raise ValueError(f"{key}: at most {MAX_VALUE_CHARS} characters")
        if "\x00" in value:
            raise ValueError(f"{key}: contains a NUL character")
    elif isinstance(value, bool) or value is None or isinstance(value, float):
        return
    elif isinstance(value, int):
        if abs(value) > 2**53:
            raise ValueError(f"{key}: integer out of range")
    elif isinstance(value, (dict, list)):
        if depth >= 3:
            raise ValueError(f"{key}: nested more than 3 levels")
        items = value.items() if isinstance(value, dict) else ((f"{key}[{i}]", v) for i, v in enumerate(value))
        for child_key, child in items:
            _check_value(str(child_key), child, depth + 1, budget)
    else:
        raise ValueError(f"{key}: not a JSON value")


class Evidence(BaseModel):
    comparison: str
    level: int = Field(description="Splink comparison level (gamma); -1 = a value was missing")
    match_weight: float | None = Field(description="log2 Bayes factor incl. term-frequency adjustment")


class CandidateOut(BaseModel):
    customer_id: str
    match_probability: float
    match_weight: float
    is_match: bool = Field(description="match weight at or above the model's match threshold")
    matched_source_record_id: str
    n_records_matched: int
    evidence: list[Evidence]
    customer: dict[str, Any]


class ContactOut(BaseModel):
    customer_id: str | None
    open_leads: list[dict[str, Any]]
    active_policies: list[dict[str, Any]]
    channels: list[str]
    hold_contact: bool = Field(description="true: this person is already being worked through another "
                                           "channel for this interest; a lead router should hold the new contact")
    why: str


class ResolveResponse(BaseModel):
    warehouse_version: str
    party_type: str
    standardized: dict[str, Any]
    candidates: list[CandidateOut]
    existing_contact: ContactOut


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["must_link", "cannot_link", "not_sure"]
    reason: str = Field(..., min_length=1, max_length=500, description="the evidence relied on")
    decided_by: str = Field(..., min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")


def create_app(config: ServeConfig, holder: WarehouseHolder | None = None) -> FastAPI:
    """The app over `config.warehouse`; `holder` may be passed in (tests, benchmarks)."""
    holder = holder or WarehouseHolder(config.warehouse, config.open_lead_days, config.poll_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        import asyncio

        await asyncio.to_thread(holder.start)
        yield
        holder.stop()

    app = FastAPI(
        title="Unified customer view", version="1",
        description="Real-time resolution, customer look-ups and the steward review queue over the "
                    "published warehouse. Send `Authorization: Bearer <token>`.",
        lifespan=lifespan, docs_url=None, redoc_url=None)  # the docs UIs load scripts from a CDN
    app.state.config, app.state.holder = config, holder
    problems.install(app)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)

    # Dependencies are async (they neither block nor wait): a sync one costs a hop to the
    # thread pool per request, and the version's generator two (enter and exit).
    async def authorized(request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, supplied = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(supplied.strip().encode(),
                                                                     config.token.encode()):
            raise Problem(401, "Not authenticated", "send Authorization: Bearer <token>")
        return "api"

    async def version(request: Request):
        with holder.acquire() as current:
            if current is None:
                raise Problem(503, "No warehouse", holder.last_error or
                              f"no published warehouse at {config.warehouse} yet: run the pipeline")
            yield current

    Auth = Annotated[str, Depends(authorized)]
    Version = Annotated[WarehouseVersion, Depends(version)]

    @app.get("/health", summary="Liveness and the warehouse version served (no personal data)")
    def health() -> dict:
        with holder.acquire() as current:
            return {"status": "ok" if current else "no_warehouse",
                    "warehouse_version": current.label if current else None,
                    "run_id": current.run_id if current else None,
                    "loaded_seconds": current.loaded_seconds if current else None,
                    "reloads": holder.reloads, "last_error": holder.last_error,
                    # how many requests shared each execution of the batched steps
                    "batching": {"name_lookup": current.index.name_batching(),
                                 "standardize": current.resolver.batching()} if current else None}

    @app.post("/resolve", response_model=ResolveResponse,
              summary="Is this record a customer we know? Best customers with evidence, and their open contacts")
    async def resolve(body: ResolveRequest, _: Auth, wh: Version) -> Answer:
        # A canonical record is scored in Python and numpy alone, under the GIL: on the event
        # loop, as a hop to the thread pool and back costs about what the work does. A
        # source-shaped one waits on DuckDB (the mapping's SQL), which releases the GIL: in a
        # worker thread, so that concurrent records share one execution (StandardizeBatcher).
        if body.source == CANONICAL:
            answer = resolve_record(wh, body)
        else:
            with wh.resolver.arriving(body.source):
                answer = await run_in_threadpool(resolve_record, wh, body)
        return Answer(answer, headers=_version_header(wh))

    @app.get("/customers/{customer_id}", summary="One customer's 360° view with policies and links")
    def customer(customer_id: Annotated[str, Path(min_length=1, max_length=64)], _: Auth,
                 wh: Version) -> Answer:
        hits = wh.index.hits("id", customer_id)
        if not hits:
            raise Problem(404, "Not found", f"no customer {customer_id!r} in warehouse {wh.label}")
        current = hits[0].customer_id
        profile = wh.profiles_of([current])[0]
        body = {"customer": profile, "requested_id": customer_id,
                "merged_into": current if current != customer_id else None,
                "policy_links": wh.links_by_customer.get(current, []),
                "contact": wh.contacts.get(current, {}),
                "warehouse_version": wh.label}
        return Answer(body, headers=_version_header(wh))

    for path_key, index_key in LOOKUP_KEYS.items():
        _add_lookup(app, path_key, index_key, Auth, Version)

    @app.get("/review/groups", summary="The review queue, one row per pair of customers, most impact first")
    def groups(_: Auth, wh: Version,
               status: Literal["open", "decided", "all"] = "open",
               party_type: Literal["person", "organization"] | None = None,
               limit: Annotated[int, Query(ge=1, le=500)] = 50,
               offset: Annotated[int, Query(ge=0, le=10**7)] = 0) -> Answer:
        from pipelines.serve.queue import list_groups

        total, page = list_groups(wh, config, status, party_type, limit, offset)
        return Answer({"total": total, "groups": page, "order": _order(),
                       "warehouse_version": wh.label}, headers=_version_header(wh))

    @app.get("/review/groups/{group_id}", summary="One review group: both customers' records side by side, "
                                                  "per-comparison evidence")
    def group(group_id: Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")], _: Auth,
              wh: Version) -> Answer:
        from pipelines.serve.queue import group_detail

        detail = group_detail(wh, config, group_id)
        if detail is None:
            raise Problem(404, "Not found", f"no review group {group_id} in warehouse {wh.label}")
        return Answer(detail, headers=_version_header(wh))

    @app.post("/review/groups/{group_id}/decision", status_code=201,
              summary="Decide a review group: must_link / cannot_link go to the override file")
    def decide(group_id: Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")], body: DecisionRequest,
               _: Auth, wh: Version) -> Answer:
        from pipelines.serve.queue import decide_in_group

        written = decide_in_group(wh, config, group_id, body.decision, body.decided_by, body.reason)
        return Answer(written, status_code=201, headers=_version_header(wh))

    from pipelines.serve.workbench import install as install_workbench

    install_workbench(app, config, holder)
    return app


def _order() -> str:
    from pipelines.identify.review import GROUP_ORDER

    return GROUP_ORDER


def _version_header(wh: WarehouseVersion) -> dict[str, str]:
    return {"X-Warehouse-Version": wh.label}


def _add_lookup(app: FastAPI, path_key: str, index_key: str, auth, version) -> None:
    param = "national_id" if index_key == "national_id" else index_key

    # Key look-ups are dictionary work: on the event loop (see resolve). A name look-up scans
    # the name vocabularies: in a worker thread, so that the look-ups arriving meanwhile share
    # the next scan (LookupIndex.top_name_hits).
    async def lookup(wh: version, _: auth,
               value: Annotated[str, Query(alias=param, min_length=1, max_length=200,
                                           description=f"the {param.replace('_', ' ')} to look up")],
               limit: Annotated[int, Query(ge=1, le=100)] = 10) -> Answer:
        if index_key == "name":
            with wh.index.name_lookup_arriving():
                found = await run_in_threadpool(lookup_customers, wh, index_key, value, limit)
        else:
            found = lookup_customers(wh, index_key, value, limit)
        return Answer({"key": param, "value": value, "candidates": found,
                       "warehouse_version": wh.label}, headers=_version_header(wh))

    lookup.__name__ = f"lookup_by_{param}"
    app.get(f"/lookup/{path_key}", summary=f"Customers by {param.replace('_', ' ')}, best first")(lookup)


def lookup_customers(wh: WarehouseVersion, key: str, value: str, limit: int) -> list[dict]:
    """Candidate customers, best first, each its 360° row plus match_score and match_reason."""
    value = value.strip()
    if not value:
        raise Problem(422, "Invalid request", f"{key}: empty value")
    if key == "name":  # thousands of hits for a common name: ranked in arrays by the index
        top = wh.index.top_name_hits(value, limit)
    else:
        hits = wh.index.hits(key, value)
        # rank on the confidence column alone; whole 360 rows only for the ones returned
        confidence = wh.confidence_of([h.customer_id for h in hits])
        ranked = sorted((h for h in hits if h.customer_id in confidence),
                        key=lambda h: (-h.score, -(confidence[h.customer_id] or 0.0), h.customer_id))
        top = ranked[:limit]
    if not top:
        return []
    profiles = {p["customer_id"]: p for p in wh.profiles_of([h.customer_id for h in top])}
    return [{**profiles[h.customer_id], "match_score": round(h.score, 3), "match_reason": h.reason}
            for h in top]


def resolve_record(wh: WarehouseVersion, body: ResolveRequest) -> dict:
    """Standardize, score against the warehouse, and say whether the person is already in contact."""
    from pipelines.identify.realtime import PARTY_TYPES

    resolver = wh.resolver
    try:
        canonical = resolver.standardize_record(dict(body.record), body.source)
    except KeyError as err:
        raise Problem(422, "Unknown source", str(err).strip("'\"")) from err
    except Exception as err:  # a value the mapping cannot read: the client's record, not the service
        raise Problem(422, "Record cannot be standardized", f"{type(err).__name__}: {err}") from err
    party_type = str(canonical.get("party_type"))
    if party_type not in PARTY_TYPES:
        raise Problem(422, "Record cannot be resolved",
                      f"party_type {party_type!r} is not one of {list(PARTY_TYPES)}"
                      + (" (give party_type in a canonical record)" if body.source == CANONICAL else ""))
    try:
        found = resolver.resolve_canonical(canonical, top_k=body.top_k)
    except Exception as err:
        log.info("resolve rejected a record: %s", err, exc_info=True)
        raise Problem(422, "Record cannot be resolved", f"{type(err).__name__}: {err}") from err
    threshold = wh.match_weight[party_type]
    summaries = {p["customer_id"]: {k: p.get(k) for k in SUMMARY_COLUMNS}
                 for p in wh.summaries_of([c.customer_id for c in found])}
    candidates = [{
        "customer_id": c.customer_id, "match_probability": c.match_probability,
        "match_weight": c.match_weight, "is_match": c.match_weight >= threshold,
        "matched_source_record_id": c.source_record_id, "n_records_matched": c.n_records_matched,
        "evidence": [{"comparison": k, "level": level, "match_weight": c.evidence.get(k)}
                     for k, level in c.levels.items()],
        "customer": summaries.get(c.customer_id, {"customer_id": c.customer_id}),
    } for c in found]
    standardized = {k: canonical.get(k) for k in SHOWN_CANONICAL if k in canonical}
    product = canonical.get("product")
    best = candidates[0] if candidates and candidates[0]["is_match"] else None
    return {"warehouse_version": wh.label, "party_type": party_type,
            "standardized": {k: _plain(v) for k, v in standardized.items()},
            "candidates": candidates,
            "existing_contact": existing_contact(wh, best["customer_id"] if best else None,
                                                 None if _missing(product) else str(product))}


def existing_contact(wh: WarehouseVersion, customer_id: str | None, product: str | None) -> dict:
    """Open leads and active policies of the matched customer, and whether to hold a new contact."""
    if customer_id is None:
        return {"customer_id": None, "open_leads": [], "active_policies": [], "channels": [],
                "hold_contact": False, "why": "no existing customer matches: a new contact"}
    contact = wh.contacts.get(customer_id, {})
    leads, policies = contact.get("open_leads", []), contact.get("active_policies", [])
    channels = sorted({x["channel"] for x in [*leads, *policies] if x.get("channel")})
    wanted = product.upper() if product else None
    same_leads = [x for x in leads if wanted is None or (x.get("product") or "").upper() == wanted]
    same_policies = [x for x in policies if wanted is not None and (x.get("product") or "").upper() == wanted]
    if same_policies:
        why = f"already holds an active {wanted} policy ({same_policies[0]['policy_number']})"
    elif same_leads:
        lead = same_leads[0]
        why = (f"open lead {lead['source_record_id']} for {lead.get('product') or 'a product'} "
               f"through {lead.get('channel') or 'an unknown channel'} since {lead.get('date')}")
    else:
        why = "known customer with no open lead" + (f" for {wanted}" if wanted else "")
    return {"customer_id": customer_id, "open_leads": leads, "active_policies": policies,
            "channels": channels, "hold_contact": bool(same_policies or same_leads), "why": why}


def _plain(value: Any) -> Any:
    """A canonical value as JSON shows it: missing -> null, a date-typed timestamp -> its date."""
    if _missing(value):
        return None
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, datetime) and value.time() == datetime.min.time():
        return value.date()
    return value


def _missing(value: Any) -> bool:
    try:
        import pandas as pd

        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, whether announced or streamed."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await _too_large(scope, receive, send, self.max_bytes)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(scope, receive, send, self.max_bytes)


class _BodyTooLarge(Exception):
    pass


async def _too_large(scope, receive, send, max_bytes: int) -> None:
    response = problems.problem_response(413, "Request too large",
                                         f"request bodies are limited to {max_bytes} bytes",
                                         scope.get("path", ""))
    await response(scope, receive, send)
