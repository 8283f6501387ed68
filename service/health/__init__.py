"""Health monitoring: check-ins, test schedule, samples, lab results, alerts, exposure reviews."""
