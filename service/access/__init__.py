"""Access: staff, roles, integration clients, tokens, guards, audit, personal-data crypto."""
