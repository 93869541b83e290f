"""The sign-in pages of the console and the admin, and the OIDC provider's two URLs.

Both login pages offer what is switched on (fcore.settings, "Sign-in"): the password form
(FCORE_LOCAL_PASSWORDS) and a "Sign in with <provider>" button (FCORE_OIDC_ISSUER). With
local passwords off, a password POST is refused (403) before anything checks it. The button
is a form POST with the CSRF token; the provider's answer comes back to `/oidc/callback/`
(mozilla-django-oidc's view; the backend is `fcore.oidc.ProviderBackend`). Without a
provider, both OIDC URLs answer 404.
"""

from functools import wraps

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.http import Http404
from django.shortcuts import render
from django.urls import path
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

from fcore.interfaces.csp import provider_form_action
from fcore.oidc import provider_name

PASSWORDS_OFF = ("Password sign-in is switched off here: sign in with your organisation's "
                 "identity provider.")
PROVIDER_FAILED = "Sign-in with the identity provider did not succeed; try again."


def sign_in_context(request, message: str = "") -> dict:
    """What a login page offers (the password form, the provider's button) and what it
    says first (`message`, or why the last provider sign-in came back here)."""
    enabled = settings.FCORE_OIDC_ENABLED
    if not message and enabled and request.GET.get("provider") == "failed":
        message = PROVIDER_FAILED
    return {"sign_in": {"passwords": settings.FCORE_LOCAL_PASSWORDS,
                        "provider": provider_name() if enabled else "", "message": message}}


def _passwords_refused(request, template: str, context: dict):
    return render(request, template, {**context, **sign_in_context(request, PASSWORDS_OFF)},
                  status=403)


class ConsoleSignIn(LoginView):
    """The console's login page (`/console/login/`)."""

    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        if not settings.FCORE_LOCAL_PASSWORDS:
            return _passwords_refused(request, self.template_name,
                                      {"next": request.POST.get("next", "")})
        return super().post(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), **sign_in_context(self.request)}


@provider_form_action
def admin_sign_in(request):
    """The admin's login page (`/admin/login/`): Django's, plus the provider's button."""
    if request.method == "POST" and not settings.FCORE_LOCAL_PASSWORDS:
        return _passwords_refused(request, "admin/login.html",
                                  {**admin.site.each_context(request), "title": "Log in",
                                   "next": request.POST.get("next", "")})
    return admin.site.login(request, extra_context=sign_in_context(request))


def _provider_only(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not settings.FCORE_OIDC_ENABLED:
            raise Http404("no OIDC provider is configured")
        return view(request, *args, **kwargs)

    return wrapper


class ProviderSignInStart(OIDCAuthenticationRequestView):
    """Send the person to the provider (POST from a login page's button; `?next=` kept)."""

    http_method_names = ["post"]

    def post(self, request):
        return self.get(request)


console_sign_in = provider_form_action(ConsoleSignIn.as_view())

urlpatterns = [
    path("authenticate/", _provider_only(ProviderSignInStart.as_view()),
         name="oidc_authentication_init"),
    path("callback/", _provider_only(OIDCAuthenticationCallbackView.as_view()),
         name="oidc_authentication_callback"),
]
