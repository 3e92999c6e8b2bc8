"""Side-by-side performance measurements of KioskHub (scripts, not tests); see README.md."""
