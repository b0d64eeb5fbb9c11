"""score_service: authoritative scoring, the ledger and the transactional outbox."""
