"""Views: results in, figures out. No view ever takes a model."""
