from django.urls import path
from rest_framework.routers import DefaultRouter

from agent_sessions.views import (
    SessionMessageBatchView,
    SessionMessageClearView,
    SessionMessagePopView,
    SessionMessagesView,
    SessionViewSet,
)

router = DefaultRouter()
router.include_root_view = False
router.register("", SessionViewSet, basename="session")  # under sessions/ (config.urls)

urlpatterns = [
    path("<uuid:session_pk>/messages/", SessionMessagesView.as_view(), name="session-messages"),
    path("<uuid:session_pk>/messages/batch/", SessionMessageBatchView.as_view(), name="session-messages-batch"),
    path("<uuid:session_pk>/messages/pop/", SessionMessagePopView.as_view(), name="session-messages-pop"),
    path("<uuid:session_pk>/messages/clear/", SessionMessageClearView.as_view(), name="session-messages-clear"),
    *router.urls,
]
