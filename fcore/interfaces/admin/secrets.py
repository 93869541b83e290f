"""A secret shown once, on the page that answers the admin's "add".

Django admin reports an add through the messages framework, whose cookie is signed but not
encrypted (and whose fallback is the session, stored server-side): a secret put there
travels and rests in clear. An admin that creates something with a one-time secret calls
`one_time_secret_keep` from `save_model`; its `response_add` then renders the secret on the
response itself (never cached: admin views send `no-store`) with links onwards, and adds no
message at all.
"""

from django.template.response import TemplateResponse
from django.urls import reverse

ONE_TIME_SECRET_TEMPLATE = "admin/one_time_secret.html"
_REQUEST_ATTRIBUTE = "fc_one_time_secret"


class OneTimeSecretAdmin:
    """ModelAdmin mixin: after an add that kept a secret, a page that shows it once."""

    def one_time_secret_keep(self, request, *, secret: str, label: str) -> None:
        """Keep `secret` for this request's response page (`label` names what it is)."""
        setattr(request, _REQUEST_ATTRIBUTE, (label, secret))

    def response_add(self, request, obj, post_url_continue=None):
        kept = getattr(request, _REQUEST_ATTRIBUTE, None)
        if kept is None:
            return super().response_add(request, obj, post_url_continue)
        label, secret = kept
        opts = self.opts
        context = {
            **self.admin_site.each_context(request),
            "opts": opts, "original": obj, "title": f"{opts.verbose_name.capitalize()} created",
            "subtitle": None, "label": label, "secret": secret,
            "change_url": reverse(f"{self.admin_site.name}:{opts.app_label}_"
                                  f"{opts.model_name}_change", args=[obj.pk]),
            "changelist_url": reverse(f"{self.admin_site.name}:{opts.app_label}_"
                                      f"{opts.model_name}_changelist"),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, ONE_TIME_SECRET_TEMPLATE, context)
