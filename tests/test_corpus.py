"""The bundled request corpus (data/texts.csv): size, uniqueness, length spread, labels, and
that the committed file is exactly what data/make_corpus.py generates."""

from __future__ import annotations

import csv
import importlib.util
import re
import statistics
from pathlib import Path
from types import ModuleType

import pytest

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
CSV_PATH = DATA_DIR / "texts.csv"
LABELS = {"negative", "neutral", "positive"}


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_corpus", DATA_DIR / "make_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return load_generator()


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with CSV_PATH.open(encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file)
        assert reader.fieldnames == ["id", "text", "label"]
        return list(reader)


def normalize(text: str) -> str:
    return " ".join(text.lower().split())


def n_words(text: str) -> int:
    return len(text.split())


def test_size_and_ids(rows):
    assert len(rows) >= 1000
    assert [int(r["id"]) for r in rows] == list(range(1, len(rows) + 1))


def test_no_duplicates_after_normalization(rows):
    seen: dict[str, str] = {}
    for row in rows:
        key = normalize(row["text"])
        assert key not in seen, f"row {row['id']} duplicates row {seen[key]}: {row['text']!r}"
        seen[key] = row["id"]


def test_texts_are_clean_single_lines(rows):
    for row in rows:
        text = row["text"]
        assert text == text.strip() and "\n" not in text and "\r" not in text, row["id"]
        assert "{" not in text and "}" not in text, f"unfilled slot in row {row['id']}: {text!r}"


def test_no_sentence_repeated_within_a_text(rows):
    for row in rows:
        parts = re.split(r"(?<=[.!?])\s+", row["text"].lower())
        parts = [p.strip(" .!?") for p in parts if p.strip(" .!?")]
        assert len(set(parts)) == len(parts), f"row {row['id']}: {row['text']!r}"


def test_length_spread(rows):
    lengths = [n_words(r["text"]) for r in rows]
    assert min(lengths) >= 3
    assert max(lengths) <= 80
    assert 10 <= statistics.median(lengths) <= 30
    # A long tail and some very short messages, not one typical length.
    assert sum(n >= 50 for n in lengths) >= 0.02 * len(rows)
    assert sum(n >= 60 for n in lengths) >= 10
    assert sum(n <= 6 for n in lengths) >= 0.02 * len(rows)
    assert sum(5 <= n <= 30 for n in lengths) >= 0.6 * len(rows)


def test_labels_allowed_and_balanced(rows):
    counts = {label: 0 for label in LABELS}
    for row in rows:
        assert row["label"] in LABELS, row
        counts[row["label"]] += 1
    for label, count in counts.items():
        assert count >= 0.2 * len(rows), (label, counts)


def test_some_unicode_in_a_minority(rows):
    non_ascii = sum(not r["text"].isascii() for r in rows)
    assert 0.05 * len(rows) <= non_ascii <= 0.5 * len(rows)


def test_committed_file_matches_fresh_generation(generator):
    fresh = generator.to_csv(generator.generate())
    committed = CSV_PATH.read_text(encoding="utf-8")
    assert committed == fresh, "data/texts.csv is stale: run python data/make_corpus.py"


def test_generator_is_seeded(generator):
    first = [r.text for r in generator.generate(seed=7)][:50]
    assert first == [r.text for r in generator.generate(seed=7)][:50]
    assert first != [r.text for r in generator.generate(seed=8)][:50]


def test_check_flag_detects_an_edited_file(generator, tmp_path, capsys):
    copy = tmp_path / "texts.csv"
    copy.write_text(CSV_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    assert generator.main(["--check", "--out", str(copy)]) == 0
    lines = copy.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[5] = lines[5].replace(",", ";", 1)
    copy.write_text("".join(lines), encoding="utf-8")
    assert generator.main(["--check", "--out", str(copy)]) == 1
    assert "out of date" in capsys.readouterr().err


def test_stats_report_the_real_counts(generator, rows, capsys):
    assert generator.main(["--stats"]) == 0
    out = capsys.readouterr().out
    assert f"Rows: **{len(rows)}**" in out
    for label in LABELS:
        count = sum(r["label"] == label for r in rows)
        assert f"| {label} | {count} |" in out


def test_readme_quotes_the_current_statistics(generator):
    readme = (DATA_DIR / "README.md").read_text(encoding="utf-8")
    stats = generator.stats_markdown(generator.generate())
    assert stats in readme, "data/README.md is stale: paste python data/make_corpus.py --stats"
