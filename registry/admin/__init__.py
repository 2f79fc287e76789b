"""The registry in the Django admin. Every change goes through registry.services with the
logged-in user as the actor (via "admin"): see views.py."""

from django.contrib import admin

from registry.admin.prompts import PromptAdmin
from registry.admin.versions import PromptVersionAdmin
from registry.models import Prompt, PromptVersion

admin.site.site_header = "promptramp"
admin.site.site_title = "promptramp admin"
admin.site.index_title = "Prompts, versions, labels, API keys and the audit log"

admin.site.register(Prompt, PromptAdmin)
admin.site.register(PromptVersion, PromptVersionAdmin)
