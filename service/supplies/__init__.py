"""Supplies: item catalogue, stock ledger, days of cover, replenishment, logistics feed and webhooks."""
