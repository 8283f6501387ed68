"""Regions: the command chain's tree, region scope, roll-ups, daily snapshots and reports."""
