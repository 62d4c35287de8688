"""Model deployment pages (issue 6): deployment history, import form."""
