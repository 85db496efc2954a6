"""Find SQL built by string formatting with values in it (used by test_sql_building.py)."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

SQL_WORDS = re.compile(r"\b(SELECT|FROM|WHERE|COPY|ATTACH|CREATE|INSERT|UPDATE|DELETE|DESCRIBE|"
                       r"read_parquet|read_json|read_csv|COMMENT ON|VALUES|JOIN|AS|IS|IN|AND|OR)\b")
# Values that never belong in SQL text unquoted (the issue's `--run-id` case); other unquoted
# placeholders are SQL fragments or names the code builds from its own configuration.
VALUE_NAMES = re.compile(r"\b(run_id|export_date|logical_date)\b")
QUOTING_HELPERS = ("quote_literal", "quote_ident", "quote_path", "sql.")


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    expression: str
    why: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {{{self.expression}}} {self.why}"


def _expression_source(source: str, node: ast.expr) -> str:
    return ast.get_source_segment(source, node) or ast.dump(node)


def formatted_sql(path: Path, root: Path) -> list[Finding]:
    """Placeholders of SQL f-strings that put a value into the SQL text unquoted or hand-quoted."""
    source = path.read_text(encoding="utf-8")
    findings = []
    relative = str(path.relative_to(root))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "replace" and len(node.args) == 2 \
                and all(isinstance(a, ast.Constant) for a in node.args) \
                and node.args[0].value == "'" and node.args[1].value == "''":
            findings.append(Finding(relative, node.lineno, "replace(\"'\", \"''\")",
                                    "quotes SQL by hand (use pipelines.sql)"))
        if not isinstance(node, ast.JoinedStr):
            continue
        text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
        if not SQL_WORDS.search(text):
            continue
        before = ""
        for part in node.values:
            if isinstance(part, ast.Constant):
                before = part.value
                continue
            assert isinstance(part, ast.FormattedValue)
            expression = _expression_source(source, part.value)
            helper = expression.startswith(QUOTING_HELPERS)
            if before.rstrip().endswith(("'", '"')) and not helper:
                findings.append(Finding(relative, node.lineno, expression,
                                        "is put inside quotes by formatting"))
            elif VALUE_NAMES.search(expression) and not helper \
                    and not isinstance(part.value, ast.Call):  # a call builds SQL from parts
                findings.append(Finding(relative, node.lineno, expression,
                                        "is a value formatted into SQL"))
            before = ""
    return findings
