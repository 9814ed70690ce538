"""The grader side of one run: the pytest plugin, partial credit, proxies and the grade cache."""
