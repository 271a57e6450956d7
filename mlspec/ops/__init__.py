"""Operations: what a spec promises production (readiness) and what on-call does about it (runbook)."""
