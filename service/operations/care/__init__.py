"""Resident care: vulnerability flags on a stay (health data) and service requests with an SLA per kind."""
