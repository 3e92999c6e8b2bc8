"""Sample data for sites without central data: a small synthetic beamline scan."""

from __future__ import annotations

import csv
import math
from pathlib import Path

SAMPLE_CSV_NAME = "beamline-sample.csv"
README_NAME = "README.txt"
SAMPLE_COLUMNS = ("time_s", "intensity", "temperature_k")
SAMPLE_ROW_COUNT = 200

_README_TEXT = """\
This folder holds the site's central data.

In a real KioskHub deployment it is the lab's central data store, mounted
read-only into every user server. Here it holds a small synthetic sample,
beamline-sample.csv (columns: time_s, intensity, temperature_k), so that the
example notebooks have something to read.
"""


def sample_rows(row_count: int = SAMPLE_ROW_COUNT) -> list[tuple[float, float, float]]:
    """Rows of a scan: a Gaussian peak on a flat background, with a slow temperature drift."""
    rows = []
    for index in range(row_count):
        time_s = index * 0.5
        peak = 850.0 * math.exp(-((time_s - 50.0) ** 2) / (2 * 6.0**2))
        pseudo_noise = 12.0 * math.sin(index * 12.9898) * math.cos(index * 78.233)
        intensity = 120.0 + peak + pseudo_noise
        temperature_k = 293.15 + 0.8 * math.sin(time_s / 40.0) + 0.004 * time_s
        rows.append((round(time_s, 2), round(intensity, 3), round(temperature_k, 3)))
    return rows


def write_sample_data(directory: Path) -> Path:
    """Write the sample CSV and a README into `directory`, leaving existing files as they are.

    Returns the path of the CSV file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    readme_path = directory / README_NAME
    if not readme_path.exists():
        readme_path.write_text(_README_TEXT, encoding="utf-8")
    csv_path = directory / SAMPLE_CSV_NAME
    if csv_path.exists():
        return csv_path
    with csv_path.open("w", newline="", encoding="utf-8") as csv_file:
        writer = csv.writer(csv_file)
        writer.writerow(SAMPLE_COLUMNS)
        writer.writerows(sample_rows())
    return csv_path
