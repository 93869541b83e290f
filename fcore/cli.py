"""`fc` — the command line of an installed Federation Core (the console script).

`fc COMMAND …` is `python manage.py COMMAND …` without a checkout: Django's management
entry point with DJANGO_SETTINGS_MODULE defaulting to `fcore.settings`. A command's dashes
stand for its underscores (`fc load-workflows` is `load_workflows`, `fc audit-verify` is
`audit_verify`). The processes: `fc serve` (all three), or `fc web`, `fc worker`,
`fc beat` one each (the Procfile). `fc verify-pack PACK` is the offline verifier
(`audit.verify_pack`): no settings, no database.
"""

import os
import sys

# commands that run without settings (no FCORE_VAR_DIR needed)
_NO_SETTINGS = {"", "help", "--help", "-h", "version", "--version"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    command = argv[1] if len(argv) > 1 else ""
    if command in ("verify-pack", "verify_pack"):
        from audit.verify_pack import main as verify_pack

        return verify_pack(argv[2:], prog="fc verify-pack")
    if command and not command.startswith("-"):
        command = argv[1] = command.replace("-", "_")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fcore.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    if command not in _NO_SETTINGS:
        try:
            settings.INSTALLED_APPS  # noqa: B018 - loads the settings: a clear refusal
        except ImproperlyConfigured as exc:
            print(f"fc: {exc}", file=sys.stderr)
            return 2
    execute_from_command_line(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
