"""contrastive test suite."""
