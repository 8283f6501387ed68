"""Infection control: inspections and their findings, environmental swabs, the medical-waste log."""
