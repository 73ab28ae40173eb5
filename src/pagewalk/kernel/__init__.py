"""kernel package."""
