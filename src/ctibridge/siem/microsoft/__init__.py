"""siem/microsoft."""
