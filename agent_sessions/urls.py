from django.urls import path
from rest_framework.routers import DefaultRouter

from agent_sessions.views import SessionMessagesView, SessionViewSet

router = DefaultRouter()
router.include_root_view = False
router.register("sessions", SessionViewSet, basename="session")

urlpatterns = [
    path("sessions/<uuid:session_pk>/messages/", SessionMessagesView.as_view(), name="session-messages"),
    *router.urls,
]
