"""The pure parts of a rollout's live page in the admin (no Django; time is an argument):
`figures` (a metric's value, name and units), `charts` (per-arm charts over time as SVG
geometry) and `progress` (what the current step waits for). rollouts/admin/live.py reads the
database and puts them together."""
