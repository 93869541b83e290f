"""python manage.py load_workflows FILE… — load bundles of definitions and policies."""

import json
from pathlib import Path

import yaml
from django.core.management.base import BaseCommand, CommandError

from runs.bundles import BundleError, bundle_load


def read_bundle(path: Path, text: str | None = None):
    """The bundle in a YAML or JSON file (its `text`, when already read)."""
    text = path.read_text(encoding="utf-8") if text is None else text
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise BundleError(f"{path}: cannot parse: {exc}") from None


class Command(BaseCommand):
    help = "Load workflow/policy bundles (YAML or JSON). Idempotent; changes become versions."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+")
        parser.add_argument("--actor", default="system:loader")

    def handle(self, *args, files, actor, **options):
        for name in files:
            path = Path(name)
            if not path.is_file():
                raise CommandError(f"{path}: no such file")
            try:
                text = path.read_text(encoding="utf-8")
                summary = bundle_load(read_bundle(path, text), actor=actor, source=str(path),
                                      text=text)
            except BundleError as exc:
                raise CommandError(str(exc)) from None
            for kind, label in (("workflows", "workflow"), ("policies", "policy")):
                for item in summary[kind]:
                    state = "new version" if item["changed"] else "unchanged"
                    self.stdout.write(f"{path}: {label} {item['name']} "
                                      f"v{item['version']} ({state})")
            for item in summary["schedules"]:
                state = "saved" if item["changed"] else "unchanged"
                self.stdout.write(f"{path}: schedule {item['name']} ({state})")
