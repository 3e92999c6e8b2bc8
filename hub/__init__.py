"""KioskHub: JupyterHub assembled for research labs."""
