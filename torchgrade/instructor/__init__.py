"""What instructors run: the command line, batch grading, releases and the check of an assignment's samples."""
