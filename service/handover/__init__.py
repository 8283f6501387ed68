"""Hand-over on release: the receiving community, the home phases, the release certificate."""
