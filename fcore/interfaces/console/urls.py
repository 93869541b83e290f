"""URLs of the approval console, mounted at /console/ (namespace `console`)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from fcore.interfaces.signin import console_sign_in

from . import evidence, gate_views, tenants, views

app_name = "console"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("login/", console_sign_in, name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("gates/bulk", views.gates_bulk_decide, name="gates-bulk"),
    path("gates/<int:gate_id>/decide", views.gate_decide, name="gate-decide"),
    path("gates/<int:gate_id>/override", gate_views.gate_override, name="gate-override"),
    path("gates/<int:gate_id>/override/review", gate_views.gate_override_review,
         name="gate-override-review"),
    path("gates/<int:gate_id>/review", gate_views.gate_review, name="gate-review"),
    path("runs/", views.run_list, name="runs"),
    path("runs/<str:run_id>/", views.run_detail, name="run"),
    path("runs/<str:run_id>/cancel", views.run_cancel, name="run-cancel"),
    path("runs/<str:run_id>/evidence.json", evidence.run_evidence, name="run-evidence"),
    path("audit/", views.audit_trail, name="audit"),
    path("audit/verify", views.audit_verify_start, name="audit-verify"),
    path("tenant", tenants.tenant_switch, name="tenant-switch"),
]
