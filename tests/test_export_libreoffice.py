"""The marketing CSV opened by LibreOffice Calc (headless, formula evaluation on): a fuzz corpus of
formula payloads, ASCII and full-width, gives 0 formula cells; the same corpus unescaped gives many
(the check can fail)."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import duckdb
import pytest

from pipelines.golden.export import write_safe_csv

pytestmark = pytest.mark.slow

TRIGGERS = ["=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20"]
BODIES = ["1+1", "SUM(1;2)", "SUM(1,2)", "cmd|' /C calc'!A0", "HYPERLINK(\"http://x.example\";\"x\")",
          "A1", "A1*2", "1", "2*3", "IMPORTXML(\"http://x.example\";\"//a\")", "WEBSERVICE(\"x\")",
          "=1+1", "+1", "'=1+1", " =1+1", "1e3+1", "DDE(\"cmd\";\"/C calc\";\"!A0\")"]
# CSV import options (LibreOffice's CSV filter tokens): comma, double quote, UTF-8, from line 1,
# standard cell format, language default, quoted fields not forced to text, detect special numbers
# off, ..., token 13 "evaluate formulas" ON: the strictest reading a user can choose.
CSV_FILTER = "CSV:44,34,76,1,,0,false,false,false,false,false,-1,true"


def fuzz_corpus(seed: int = 7, n_random: int = 300) -> list[str]:
    """Every trigger (and two triggers, and leading spaces) before every body, plus random mixes."""
    corpus = [t + b for t in TRIGGERS for b in BODIES]
    corpus += [t1 + t2 + "1+1" for t1 in TRIGGERS for t2 in TRIGGERS]
    corpus += [" " + t + "1+1" for t in TRIGGERS] + ["'" + t + "1+1" for t in TRIGGERS]
    corpus += ["+491512345678", "-5", "-0.25", "+8613812345678", "2026-11-22", "Müller", "王丽"]
    rng = random.Random(seed)
    alphabet = "=+-@'\"();,|!*/ A1\t\uff1d\uff0b\uff0d\uff20calcSUM0123456789"
    corpus += [rng.choice(TRIGGERS) + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
               for _ in range(n_random)]
    return corpus


def libreoffice() -> str:
    """soffice, installed from Debian's packages when missing."""
    found = shutil.which("soffice") or shutil.which("libreoffice")
    if found:
        return found
    if not shutil.which("apt-get"):
        pytest.skip("LibreOffice is not installed and apt-get is unavailable to install "
                    "Debian's libreoffice-calc")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "-o", "DPkg::Lock::Timeout=600", "update"],
                 # another test may be installing chromium at this moment: wait for dpkg's lock
                 ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "--no-install-recommends",
                  "libreoffice-calc"]):
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1200)
        assert done.returncode == 0, f"{' '.join(argv)} failed: {done.stderr[-1500:]}"
    found = shutil.which("soffice") or shutil.which("libreoffice")
    assert found, "libreoffice-calc installed but no soffice on PATH"
    return found


def formula_cells(soffice: str, csv_file: Path, workdir: Path) -> tuple[int, int]:
    """(formula cells, all non-empty cells) of the sheet LibreOffice makes of the CSV."""
    profile = workdir / "lo-profile"
    done = subprocess.run(
        [soffice, "--headless", "--norestore", f"-env:UserInstallation=file://{profile}",
         f"--infilter={CSV_FILTER}", "--convert-to", "ods", "--outdir", str(workdir),
         str(csv_file)], capture_output=True, text=True, timeout=300)
    ods = workdir / f"{csv_file.stem}.ods"
    assert done.returncode == 0 and ods.exists(), done.stdout + done.stderr
    content = zipfile.ZipFile(ods).read("content.xml").decode("utf-8")
    cells = re.findall(r"<table:table-cell [^>]*office:value-type=[^>]*>", content)
    return sum("table:formula=" in cell for cell in cells), len(cells)


def write_corpus(path: Path, corpus: list[str], safe: bool) -> None:
    with duckdb.connect() as con:
        con.execute("CREATE TABLE t (i INTEGER, payload VARCHAR, beside VARCHAR)")
        con.executemany("INSERT INTO t VALUES (?, ?, ?)",
                        [(i, p, "x" + p) for i, p in enumerate(corpus)])
        query = "SELECT payload, beside FROM t ORDER BY i"
        if safe:
            write_safe_csv(con, query, path)
        else:  # the control: the same cells, quoted, without neutralising
            con.execute(f"COPY ({query}) TO '{path}' (FORMAT csv, HEADER true, FORCE_QUOTE *)")


def test_no_cell_of_the_marketing_csv_evaluates_as_a_formula_in_libreoffice(tmp_path):
    soffice = libreoffice()
    corpus = fuzz_corpus()
    safe, raw = tmp_path / "safe.csv", tmp_path / "raw.csv"
    write_corpus(safe, corpus, safe=True)
    write_corpus(raw, corpus, safe=False)
    formulas, cells = formula_cells(soffice, safe, tmp_path)
    assert cells >= 2 * len(corpus)  # every payload arrived as a cell
    assert formulas == 0
    raw_formulas, _ = formula_cells(soffice, raw, tmp_path)
    assert raw_formulas > 40  # unescaped, LibreOffice does evaluate them: the check is real
