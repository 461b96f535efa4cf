"""The bottom layer: the shapes of what cellprompt writes to disk, and reading them safely.

Everything above (agent, grading, runs, export, evolve) passes these records around, so
they live below all of it and import nothing of cellprompt but `errors`: a grader's
result, token usage, a kernel's output dicts and how they read as text, and the
`schema_version` rule every file on disk follows (`Versioned`).
"""
