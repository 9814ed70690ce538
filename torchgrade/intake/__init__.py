"""Turning what a student hands in (a notebook, a script) into gradable modules, on the grader side."""
