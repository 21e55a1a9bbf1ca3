"""The leap0 operator: reconciles Sandbox resources into sandbox pods (kopf)."""
