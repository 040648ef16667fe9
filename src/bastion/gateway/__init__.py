"""The guarded OpenAI-compatible gateway: `create_app(GatewayConfig(upstream=...))`, or `bastion serve`."""

from .app import Gateway, GatewayConfig, PolicyStore, check_bind, create_app, is_loopback
from .audit import AuditLog, VerifyResult, verify

__all__ = ["AuditLog", "Gateway", "GatewayConfig", "PolicyStore", "VerifyResult", "check_bind", "create_app",
           "is_loopback", "verify"]
