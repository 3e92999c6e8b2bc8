"""Tests for the sample data generator."""

import csv

from kioskhub.hub.sample_data import (
    README_NAME,
    SAMPLE_COLUMNS,
    SAMPLE_CSV_NAME,
    SAMPLE_ROW_COUNT,
    write_sample_data,
)


def read_csv(path):
    with path.open(newline="", encoding="utf-8") as csv_file:
        reader = csv.DictReader(csv_file)
        return reader.fieldnames, list(reader)


def test_writes_csv_and_readme(tmp_path):
    csv_path = write_sample_data(tmp_path / "data")

    assert csv_path == tmp_path / "data" / SAMPLE_CSV_NAME
    assert csv_path.is_file()
    assert "read-only" in (tmp_path / "data" / README_NAME).read_text(encoding="utf-8")


def test_csv_has_expected_columns_and_rows(tmp_path):
    fieldnames, rows = read_csv(write_sample_data(tmp_path))

    assert tuple(fieldnames) == SAMPLE_COLUMNS == ("time_s", "intensity", "temperature_k")
    assert len(rows) == SAMPLE_ROW_COUNT == 200
    times = [float(row["time_s"]) for row in rows]
    assert times == sorted(times)
    assert all(float(row["intensity"]) > 0 for row in rows)
    assert all(250 < float(row["temperature_k"]) < 350 for row in rows)


def test_output_is_deterministic(tmp_path):
    first = write_sample_data(tmp_path / "first").read_bytes()
    second = write_sample_data(tmp_path / "second").read_bytes()

    assert first == second


def test_does_not_overwrite_existing_files(tmp_path):
    csv_path = write_sample_data(tmp_path)
    readme_path = tmp_path / README_NAME
    csv_path.write_text("changed\n", encoding="utf-8")
    readme_path.write_text("site readme\n", encoding="utf-8")

    assert write_sample_data(tmp_path) == csv_path
    assert csv_path.read_text(encoding="utf-8") == "changed\n"
    assert readme_path.read_text(encoding="utf-8") == "site readme\n"
