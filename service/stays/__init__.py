"""Residents, stays (admissions), regimes, allocation and release."""
