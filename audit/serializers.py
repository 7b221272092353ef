from __future__ import annotations

from audit.models import AuditLog
from config.api.serializers import FrozenFieldsModelSerializer


class AuditLogOutputSerializer(FrozenFieldsModelSerializer):
    class Meta:
        model = AuditLog
        fields = [
            "id",
            "timestamp",
            "user_id",
            "action",
            "resource_type",
            "resource_id",
            "ip_address",
            "user_agent",
            "request_id",
            "request_path",
            "request_method",
            "response_status",
            "changes",
            "metadata",
            "created_at",
        ]
        read_only_fields = fields
