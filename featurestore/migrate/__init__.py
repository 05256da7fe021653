"""Migration from other feature stores."""
