"""stix."""
