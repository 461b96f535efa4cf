"""The in-sandbox kernel service: one persistent Jupyter kernel behind an authenticated HTTP API.

This package runs *inside* the sandbox with the sandbox's own minimal Python, so
it imports nothing from `cellprompt`; it is started as `python -m service ...`
(see `cellprompt.sandbox.base` for the launch contract).
"""
