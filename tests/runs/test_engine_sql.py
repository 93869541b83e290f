"""The engine's named statements (runs/engine/sql.py) are written out by hand: these hold
their column lists and a new step's values to the models, so a model change that the SQL
does not follow fails here rather than loading values into the wrong fields."""

import re

from runs.engine import sql
from runs.models import Run, StepRun


def attnames(model) -> tuple:
    return tuple(f.attname for f in model._meta.concrete_fields)


def selected(statement: str) -> tuple:
    columns = re.search(r"SELECT(.*?)FROM", statement, re.S).group(1)
    return tuple(c.strip().removeprefix("r.").strip('"') for c in columns.split(","))


def inserted(statement: str) -> tuple:
    columns = re.search(r"\((.*?)\)", statement, re.S).group(1)
    return tuple(c.strip().strip('"') for c in columns.split(","))


def test_the_lock_reads_every_run_field_in_the_order_it_loads_them():
    assert sql.LOCK_RUN_FIELDS == attnames(Run)
    assert selected(sql.LOCK_RUN)[:len(sql.LOCK_RUN_FIELDS)] == sql.LOCK_RUN_FIELDS


def test_a_runs_steps_are_read_with_every_field_in_the_order_they_load():
    assert sql.STEP_FIELDS == attnames(StepRun)
    assert selected(sql.STEPS_OF_RUN) == sql.STEP_FIELDS


def test_a_new_run_is_inserted_with_every_field():
    assert inserted(sql.RUN_INSERT) == sql.LOCK_RUN_FIELDS
    assert sql.RUN_INSERT.count("%s") == len(sql.LOCK_RUN_FIELDS)


def test_a_new_step_holds_the_models_defaults():
    given = ("run_id", "step_id", "step_type", "index", "after", "config")
    assert inserted(sql.STEPS_INSERT) == given + tuple(sql.NEW_STEP)
    assert sql.STEP_ROW.count("%s") == len(given) + len(sql.NEW_STEP)
    for name, value in sql.NEW_STEP.items():
        field = StepRun._meta.get_field(name)
        assert field.get_default() == value, name
    unset = set(attnames(StepRun)) - {"id", *given, *sql.NEW_STEP}
    assert all(StepRun._meta.get_field(name).null for name in unset), unset
