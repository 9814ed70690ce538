"""Reports and what is made of them: the report and its schema, score tables, exports, gradebook, summary."""
