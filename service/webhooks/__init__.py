"""Webhooks of every integration: registration (SSRF refusal), fan-out from the outbox, signed delivery."""
