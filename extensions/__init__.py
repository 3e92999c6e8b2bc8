"""Jupyter server and JupyterLab extensions that run inside user servers."""
