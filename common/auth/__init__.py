"""Tokens: signing keys and the JWKS, issuing and verifying JWTs, the principal a verified token
names, service-account tokens, and the revoked-token list."""
