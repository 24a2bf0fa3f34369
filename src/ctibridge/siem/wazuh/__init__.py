"""siem/wazuh."""
