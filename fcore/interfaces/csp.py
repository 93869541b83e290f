"""Content Security Policy: one strict policy for every page, and what the others need.

The policy (settings.CONTENT_SECURITY_POLICY) allows scripts and stylesheets from this
origin only and nothing inline: no `<script>` or `<style>` element, no `style` attribute.
Styles set from JavaScript (element.style) are not inline markup and stay allowed. Our own
pages never need more; what third-party pages need is decided here, per path:

- `/api/docs/`: drf-spectacular's Swagger UI page carries one `<style>` element. It is
  allowed by its hash (`swagger_ui_csp`), which allows that exact text and nothing else;
  the test suite recomputes the hash from the served page, so an upgrade that changes the
  element fails a test instead of silently losing the style.
- Django's CSRF failure page carries a `<style>` element; `csrf_failure` replaces it with
  our own error page (settings.CSRF_FAILURE_VIEW).
- The login pages: their "Sign in with <provider>" button is a form whose POST is
  redirected to the OIDC provider, and `form-action` covers redirects; `provider_form_action`
  adds the origin of the provider's authorization endpoint, on those pages only.
"""

from functools import wraps
from urllib.parse import urlsplit

from csp.decorators import csp_update
from django.conf import settings

from fcore.errors import ErrorCode, json_error_view

SWAGGER_UI_STYLE_HASH = "'sha256-MMpT0iDxyjALd9PdfepImGX3DBfJPXZ4IlDWdPAgtn0='"

swagger_ui_csp = csp_update({"style-src": [SWAGGER_UI_STYLE_HASH]})

_csrf_failure_page = json_error_view(
    403, ErrorCode.CSRF_FAILED,
    "The form was out of date (CSRF check failed). Go back, reload the page and try again.")


def csrf_failure(request, reason=""):
    """A refused CSRF check: our plain error page (the middleware has logged the reason)."""
    return _csrf_failure_page(request)


def provider_form_action(view):
    """Allow the login page's provider button to lead to the OIDC provider (`form-action`
    with the authorization endpoint's origin), while a provider is configured."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        endpoint = urlsplit(settings.OIDC_OP_AUTHORIZATION_ENDPOINT)
        if not (settings.FCORE_OIDC_ENABLED and endpoint.scheme and endpoint.netloc):
            return view(request, *args, **kwargs)
        origin = f"{endpoint.scheme}://{endpoint.netloc}"
        return csp_update({"form-action": [origin]})(view)(request, *args, **kwargs)

    return wrapper
