"""What the public sends and what admins decide: submissions, categories, CSV import,
re-classification with the model in use."""
