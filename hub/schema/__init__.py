"""The site schema: every section of ``kioskhub.yaml``, validated, and how the file is read.

The bottom layer of KioskHub: it imports nothing else of KioskHub, and everything else may
import it.
"""
