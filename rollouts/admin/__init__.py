"""Rollouts in the Django admin: start one from a prompt's version, follow it live, and pause,
resume, promote, roll back or abort it. Every change goes through rollouts.services with the
logged-in user as the actor (via "admin"): see views.py."""

from django.contrib import admin

from rollouts.admin.rollouts import RolloutAdmin
from rollouts.models import Rollout

admin.site.register(Rollout, RolloutAdmin)
