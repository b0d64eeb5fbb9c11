"""auth_service: the JWT system (accounts, tokens, keys)."""
