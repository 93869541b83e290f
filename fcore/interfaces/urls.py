from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from fcore.errors import ErrorCode, json_error_view
from fcore.interfaces.api.urls import alias_urlpatterns, workflows_urlpatterns
from fcore.interfaces.csp import swagger_ui_csp
from fcore.interfaces.health import ReadyView, healthz
from fcore.interfaces.metrics import metrics_view
from fcore.interfaces.signin import admin_sign_in
from fcore.interfaces.signin import urlpatterns as oidc_urlpatterns

urlpatterns = [
    path("", RedirectView.as_view(url="/console/", permanent=False)),
    path("healthz", healthz),
    path("readyz", ReadyView.as_view()),
    path("metrics", metrics_view),
    path("workflows/", include(workflows_urlpatterns)),
    path("api/fc/", include(alias_urlpatterns)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # the split view serves Swagger UI's start-up script as a file: no inline script (CSP);
    # its page's one <style> element is allowed by hash (fcore.interfaces.csp)
    path("api/docs/", swagger_ui_csp(SpectacularSwaggerSplitView.as_view(url_name="schema")),
         name="swagger"),
    path("console/", include("fcore.interfaces.console.urls")),
    path("oidc/", include(oidc_urlpatterns)),
    path("admin/login/", admin_sign_in, name="admin-sign-in"),  # before the admin's own
    path("admin/", admin.site.urls),
]

handler404 = json_error_view(404, ErrorCode.NOT_FOUND, "Not found.")
handler500 = json_error_view(500, ErrorCode.SERVER_ERROR, "Internal error; it has been logged.")
