"""Submissions, categories, training examples and stats (issue 3)."""
