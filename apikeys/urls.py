from rest_framework.routers import DefaultRouter

from apikeys.views import APIKeyViewSet

router = DefaultRouter()
router.include_root_view = False
router.register("api-keys", APIKeyViewSet, basename="api-key")

urlpatterns = router.urls
