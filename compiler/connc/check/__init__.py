"""`connc check`: connections verified against their services, one probe per service family."""
