from django.urls import path

from . import audit_views, gate_views, log_views, policy_views, schedule_views, task_views, views

run_patterns = [
    path("runs/<str:run_id>/status", views.RunStatusUpdate.as_view()),
    path("runs/<str:run_id>/steps/<str:step_id>", views.StepReport.as_view()),
    path("runs/<str:run_id>/gates", views.RunGates.as_view()),
    path("runs/<str:run_id>/gates/<str:gate_id>", views.GateDetail.as_view()),
    path("runs/<str:run_id>/gates/<str:gate_id>/override", gate_views.GateOverride.as_view()),
    path("runs/<str:run_id>/gates/<str:gate_id>/override/review",
         gate_views.GateOverrideReview.as_view()),
    path("runs/<str:run_id>/steps/<str:step_id>/heartbeat", task_views.StepHeartbeat.as_view()),
    path("runs/<str:run_id>/receipt", views.RunReceipt.as_view()),
    path("runs/<str:run_id>/evidence", views.RunEvidence.as_view()),
    path("runs/<str:run_id>/attestation", log_views.RunAttestation.as_view()),
]

workflows_urlpatterns = [
    path("runs", views.RunListCreate.as_view(), name="runs"),
    path("runs/<str:run_id>", views.RunDetail.as_view(), name="run-detail"),
    *run_patterns,
    path("tasks/claim", task_views.TaskClaim.as_view(), name="tasks-claim"),
    path("policies/evaluate", policy_views.PolicyEvaluate.as_view(), name="policy-evaluate"),
    path("audit", views.AuditList.as_view(), name="audit"),
    path("audit/verify", audit_views.AuditVerify.as_view(), name="audit-verify"),
    path("audit/verify/latest", audit_views.AuditVerificationLatest.as_view(),
         name="audit-verify-latest"),
    path("audit/verify/<int:verification_id>", audit_views.AuditVerificationDetail.as_view(),
         name="audit-verify-detail"),
    path("audit/keys", audit_views.AuditKeys.as_view(), name="audit-keys"),
    path("audit/checkpoint", log_views.AuditCheckpoint.as_view(), name="audit-checkpoint"),
    path("audit/proof/consistency", log_views.AuditConsistencyProof.as_view(),
         name="audit-proof-consistency"),
    path("audit/proof/inclusion", log_views.AuditInclusionProof.as_view(),
         name="audit-proof-inclusion"),
    path("schedules", schedule_views.ScheduleList.as_view(), name="schedules"),
]

alias_urlpatterns = [
    path("runs", views.RunListCreate.as_view()),
    path("runs/<str:run_id>", views.RunAliasDetail.as_view()),
    *run_patterns,
]
