"""siem/elastic."""
