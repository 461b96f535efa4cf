"""What every grader returns (the record type lives in the bottom layer, `records.grades`)."""

from cellprompt.records.grades import GradeResult

__all__ = ["GradeResult"]
