"""Changes by cursor: every committed change the caller may read, in commit order, over the outbox."""
