"""The command dashboard: the /command page, its browser sessions, charts drawn as SVG."""
