"""`GET /workflows/schedules`: the tenant's schedules, their next slot and last run."""

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from runs import selectors

from .pagination import CheckedCursorPagination
from .serializers import ERROR_RESPONSES


class ScheduleCursor(CheckedCursorPagination):
    page_size = 100
    max_page_size = 200
    page_size_query_param = "limit"
    ordering = ("name", "id")


class ScheduleListQuery(serializers.Serializer):
    """Query parameters of `GET /workflows/schedules` (checked: bad values are a 400)."""

    cursor = serializers.CharField(max_length=500, required=False,
                                   help_text="the `next` or `previous` link's cursor")
    limit = serializers.IntegerField(min_value=1, max_value=200, required=False,
                                     help_text="schedules per page (default 100)")


class ScheduleLastRunOut(serializers.Serializer):
    run_id = serializers.UUIDField(help_text="the run the schedule started last")
    status = serializers.CharField(help_text="that run's status now")
    created_at = serializers.DateTimeField(help_text="when it was started")


class ScheduleOut(serializers.Serializer):
    name = serializers.CharField(help_text="the schedule's name, unique in the tenant")
    workflow = serializers.CharField(help_text="the workflow it starts (its newest version)")
    cron = serializers.CharField(help_text="five-field cron expression or @-keyword")
    timezone = serializers.CharField(help_text="IANA time zone the cron is read in")
    input = serializers.DictField(help_text="the input of every run it starts")
    enabled = serializers.BooleanField(help_text="what the bundle says")
    paused = serializers.BooleanField(help_text="paused by an operator (admin)")
    active = serializers.BooleanField(help_text="enabled and not paused: beat starts runs")
    next_slot = serializers.DateTimeField(
        allow_null=True, help_text="the next slot a run starts at (UTC); null when inactive")
    last_slot = serializers.DateTimeField(
        allow_null=True, help_text="the newest slot dealt with, or when counting began")
    last_run = ScheduleLastRunOut(allow_null=True, help_text="the run it started last")


# one schedule: drf-spectacular wraps it in the page ({next, previous, results: [...]})
EXAMPLE = {
    "name": "nightly_archive", "workflow": "archive_flow", "cron": "0 2 * * *",
    "timezone": "Europe/Berlin", "input": {"scope": "nightly"}, "enabled": True,
    "paused": False, "active": True, "next_slot": "2026-12-04T01:00:00Z",
    "last_slot": "2026-12-03T01:00:00Z",
    "last_run": {"run_id": "5b0c6f0e-8f7e-4c1b-9a53-2f9d3c1e0a11", "status": "completed",
                 "created_at": "2026-12-03T01:00:04Z"}}


def _schedule_out(schedule) -> dict:
    run = schedule.last_run
    return {"name": schedule.name, "workflow": schedule.workflow, "cron": schedule.cron,
            "timezone": schedule.timezone, "input": schedule.input,
            "enabled": schedule.enabled, "paused": schedule.paused,
            "active": schedule.active, "next_slot": schedule.next_slot,
            "last_slot": schedule.last_slot,
            "last_run": None if run is None else {
                "run_id": run.run_id, "status": run.status, "created_at": run.created_at}}


class ScheduleList(APIView):
    required_scopes = {"GET": "runs:read"}
    pagination_class = ScheduleCursor

    @extend_schema(summary="List the tenant's schedules", tags=["schedules"],
                   parameters=[ScheduleListQuery],
                   responses={200: ScheduleOut(many=True), **ERROR_RESPONSES},
                   examples=[OpenApiExample("A nightly schedule", value=EXAMPLE,
                                            response_only=True)])
    def get(self, request):
        """The tenant's schedules by name, each with its next slot and the run it started
        last. Schedules come from bundles; operators pause and resume them in admin."""
        query = ScheduleListQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            selectors.schedules_for_tenant(request.principal.tenant), request, view=self)
        return paginator.get_paginated_response(
            ScheduleOut([_schedule_out(schedule) for schedule in page], many=True).data)
