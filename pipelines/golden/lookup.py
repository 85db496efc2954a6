"""lookup: one customer's 360° view by ID, phone, email, policy number or name, from the warehouse.

Phones and e-mails are normalised the way the pipeline normalises them (E.164; lower-case), then
matched against every source record, not only the golden value: a customer is found by an old
e-mail too. When a key fits several customers (a shared landline, a common name), all are returned,
ranked by how well they match, then by confidence.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipelines import settings

PHONE_REGIONS = ("DE", "CN")  # regions tried for numbers written without a country code
NAME_SIMILARITY_FLOOR = 0.88


def normalise_phone(text: str) -> list[str]:
    """E.164 forms the text may stand for: as written (with a country code), else per region."""
    found: list[str] = []
    for region in (None, *PHONE_REGIONS):
        e164 = pipeline_phone(text, region)
        if e164 and e164 not in found:
            found.append(e164)
    return found


def pipeline_phone(text: str, region: str | None) -> str | None:
    """The pipeline's phone standardizer, so lookups agree with what ingest stored."""
    from pipelines.standardize.contact import standardize_phone

    return standardize_phone(text, region)[0]


def normalise_email(text: str) -> str:
    from pipelines.standardize.contact import standardize_email

    return standardize_email(text)[0] or text.strip().lower()


def name_key(text: str | None) -> str:
    """A name's comparison key, the pipeline's folding with spaces removed: 'Müller' -> 'mueller',
    '王伟' -> 'wangwei'."""
    if not text:
        return ""
    return re.sub(r"[^a-z0-9]", "", pipeline_fold(text) or "")


def name_parts(text: str) -> tuple[str, str]:
    """A looked-up name's first and last word, folded; equal for a single word.

    A hanzi name folds to one word ('王伟' -> 'wangwei'), but its family name is known: it is
    split as ingest splits it (compound surname, else the first character) and each part folded
    as ingest folds it (surname readings: 单 -> shan), so '王伟' is compared part by part like
    'Wang Wei' — not 'Wang Lei' — instead of as one word against every name in the warehouse."""
    from pipelines.standardize.names import family_name_norm, given_name_norm, split_hanzi_name
    from pipelines.standardize.text import is_all_han

    compact = re.sub(r"\s", "", text)
    if compact and is_all_han(compact):
        family, given = split_hanzi_name(compact)
        family_norm, given_norm = family_name_norm(family), given_name_norm(given)
        if family_norm and given_norm:
            return family_norm, given_norm
    words = (pipeline_fold(text) or "").split() or [""]
    return words[0], words[-1]


def pipeline_fold(text: str) -> str | None:
    """The pipeline's text folding, so name keys match what ingest stored."""
    from pipelines.standardize.text import fold

    return fold(text)


def candidates_sql(key: str) -> str:
    """SQL giving (customer_id, score, reason) for one kind of key; parameters: the key's values."""
    if key == "id":
        # an ID that was merged away still finds the customer that holds it now
        return """
            SELECT customer_id, 1.0 AS score, 'customer ID' AS reason
            FROM customers WHERE customer_id = $1
            UNION ALL
            SELECT survivor, 0.9, 'merged from ' || $1
            FROM (
                -- follow merges in chains (A into B, later B into C) to the ID that lives now
                WITH RECURSIVE chain(survivor, hops) AS (
                    SELECT related_customer_id, 1 FROM customer_id_history
                    WHERE event = 'merged' AND customer_id = $1
                      AND related_customer_id IS NOT NULL
                    UNION
                    SELECT h.related_customer_id, c.hops + 1
                    FROM customer_id_history h JOIN chain c ON h.customer_id = c.survivor
                    WHERE h.event = 'merged' AND h.related_customer_id IS NOT NULL
                      AND c.hops < 100
                )
                SELECT DISTINCT survivor FROM chain
            ) WHERE survivor IN (SELECT customer_id FROM customers)
        """
    if key == "phone":
        return """
            SELECT customer_id,
                   max(CASE WHEN phone_mobile IN (SELECT unnest($1)) THEN 1.0 ELSE 0.6 END)
                       + count(*) / 1000.0 AS score,
                   'phone on ' || count(*) || ' record(s): '
                       || string_agg(DISTINCT source_system, ', ') AS reason
            FROM source_records
            WHERE phone_mobile IN (SELECT unnest($1)) OR phone_landline IN (SELECT unnest($1))
            GROUP BY customer_id
        """
    if key == "email":
        return """
            SELECT customer_id, 1.0 + count(*) / 1000.0 AS score,
                   'e-mail on ' || count(*) || ' record(s): '
                       || string_agg(DISTINCT source_system, ', ') AS reason
            FROM source_records WHERE lower(email) = $1
            GROUP BY customer_id
        """
    if key == "policy":
        return """
            SELECT customer_id,
                   max(CASE role WHEN 'policyholder' THEN 1.0 WHEN 'applicant' THEN 0.95
                                 WHEN 'insured' THEN 0.9 ELSE 0.8 END) AS score,
                   'policy ' || any_value(policy_number) || ' as '
                       || string_agg(DISTINCT role, ', ') AS reason
            FROM customer_policy_links
            WHERE upper(policy_number) = upper($1)
               OR policy_key = upper(regexp_replace($1, '[^0-9A-Za-z]', '', 'g'))
            GROUP BY customer_id
        """
    if key == "name":
        # $1: the whole name folded and joined; $2, $3: its first and last word. A name of two or
        # more words is compared part by part (in either order), so 'Wang Wei' is not 'Wang Lei';
        # a single word is compared whole and with family names (a hanzi name is split first:
        # name_parts).
        given = "coalesce(given_name_norm, '')"
        family = "coalesce(family_name_norm, '')"
        joined = "regexp_replace({}, '[^a-z0-9]', '', 'g')"
        whole = joined.format(f"{given} || {family}")
        whole_reversed = joined.format(f"{family} || {given}")
        org = joined.format("coalesce(org_name_norm, '')")
        return f"""
            SELECT customer_id, max(similarity) AS score,
                   'name ' || round(max(similarity), 2) || ' similar' AS reason
            FROM (
                SELECT customer_id,
                       CASE WHEN $2 <> $3 THEN greatest(
                                (jaro_winkler_similarity({given}, $2)
                                 + jaro_winkler_similarity({family}, $3)) / 2,
                                (jaro_winkler_similarity({family}, $2)
                                 + jaro_winkler_similarity({given}, $3)) / 2,
                                jaro_winkler_similarity({org}, $1))
                            ELSE greatest(
                                jaro_winkler_similarity({whole}, $1),
                                jaro_winkler_similarity({whole_reversed}, $1),
                                jaro_winkler_similarity({org}, $1),
                                -- a family name alone fits many: ranked below full-name hits
                                0.95 * jaro_winkler_similarity({joined.format(family)}, $1))
                       END AS similarity
                FROM source_records
            )
            WHERE similarity >= {NAME_SIMILARITY_FLOOR}
            GROUP BY customer_id
        """
    raise ValueError(f"unknown lookup key {key!r}")


def lookup_key(customer_id: str | None, phone: str | None, email: str | None,
               policy: str | None, name: str | None) -> tuple[str, list]:
    """The one key given, normalised the pipeline's way."""
    given = {k: v for k, v in (("id", customer_id), ("phone", phone), ("email", email),
                               ("policy", policy), ("name", name)) if v}
    if len(given) != 1:
        raise ValueError("give exactly one of: id, phone, email, policy, name")
    key, value = next(iter(given.items()))
    if key == "phone":
        return key, [normalise_phone(str(value))]
    if key == "email":
        return key, [normalise_email(str(value))]
    if key == "name":
        return key, [name_key(str(value)), *name_parts(str(value))]
    return key, [str(value).strip()]


def lookup(customer_id: str | None = None, *, phone: str | None = None, email: str | None = None,
           policy: str | None = None, name: str | None = None,
           warehouse: Path | None = None, limit: int = 10) -> list[dict]:
    """Candidate customers for one key, best first, each as its customer_360 row plus match_score
    and match_reason; an empty list when nothing matches."""
    key, value = lookup_key(customer_id, phone, email, policy, name)
    if key == "phone" and not value[0]:
        return []
    import duckdb  # here, not at the top: `ucv --help` imports this module

    path = Path(warehouse or settings.warehouse_file())
    if path.is_dir():
        path = path / settings.warehouse_file().name
    with duckdb.connect(str(path), read_only=True) as con:
        cursor = con.execute(f"""
            WITH hits AS ({candidates_sql(key)})
            SELECT p.*, round(CAST(h.score AS DOUBLE), 3) AS match_score, h.reason AS match_reason
            FROM hits h JOIN customer_360 p USING (customer_id)
            ORDER BY h.score DESC, p.confidence DESC, p.customer_id
            LIMIT {int(limit)}
        """, value)
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
