"""What a rollout's current step is waiting for, as the live page shows it (`progress`; pure: no
Django, time is an argument). rollouts/admin/live_page.py reads the database and puts it together
with the charts (rollouts.charts) and the figures (rollouts.figures)."""
