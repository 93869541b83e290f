"""OpenAPI description of the `omega_` bearer token (drf-spectacular extension)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class OmegaTokenScheme(OpenApiAuthenticationExtension):
    target_class = "fcore.interfaces.api.auth.TokenAuthentication"
    name = "omegaToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "omega_<b64url(JSON claims)>.<b64url(HMAC-SHA256)>",
            "description": "A token minted by the client from its secret; see docs/api.md.",
        }
