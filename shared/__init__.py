"""Code both tiers import: configuration, database, ORM models, classifier, registry."""
