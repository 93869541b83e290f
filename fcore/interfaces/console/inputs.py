"""A gate's `input_schema` as form fields, and the posted fields back as a JSON object.

Only flat object schemas become fields (string, integer, number, boolean, enum; a name
listed in `required` without `properties` is a text field); anything richer is answered
with the JSON textarea. The service validates the object against the schema either way.
"""

from dataclasses import dataclass

PREFIX = "field-"
KINDS = {"string": "text", "integer": "integer", "number": "number", "boolean": "checkbox"}


@dataclass(frozen=True)
class InputField:
    name: str
    kind: str  # text | integer | number | checkbox | select
    required: bool
    label: str
    help: str = ""
    choices: tuple = ()

    @property
    def post_name(self) -> str:
        return PREFIX + self.name


def schema_fields(schema) -> list[InputField] | None:
    """Fields for a flat object schema, or None when the JSON textarea is needed."""
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        return None
    props = schema.get("properties") or {}
    required = [r for r in schema.get("required") or [] if isinstance(r, str)]
    if not isinstance(props, dict):
        return None
    fields = []
    for name in list(props) + [r for r in required if r not in props]:
        spec = props.get(name) or {}
        if not isinstance(spec, dict):
            return None
        kind = "select" if isinstance(spec.get("enum"), list) else KINDS.get(
            spec.get("type", "string"))
        if kind is None:
            return None
        fields.append(InputField(
            name=name, kind=kind, required=name in required,
            label=str(spec.get("title") or name), help=str(spec.get("description") or ""),
            choices=tuple(str(c) for c in spec.get("enum") or ())))
    return fields or None


def _value(field: InputField, raw: str):
    if field.kind == "integer":
        try:
            return int(raw)
        except ValueError:
            return raw  # the schema check names the field
    if field.kind == "number":
        try:
            return float(raw) if any(c in raw for c in ".eE") else int(raw)
        except ValueError:
            return raw
    return raw


def posted_input(data, schema) -> dict | None:
    """The object the person filled in, or None when the form had no schema fields."""
    fields = schema_fields(schema)
    if not fields or not any(key.startswith(PREFIX) for key in data):
        return None
    value = {}
    for field in fields:
        if field.kind == "checkbox":
            value[field.name] = data.get(field.post_name) == "on"
            continue
        raw = (data.get(field.post_name) or "").strip()
        if raw:
            value[field.name] = _value(field, raw)
    return value
