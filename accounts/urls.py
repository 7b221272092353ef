from rest_framework.routers import DefaultRouter

from accounts.views import UserViewSet

router = DefaultRouter()
router.include_root_view = False
router.register("", UserViewSet, basename="user")  # under users/ (config.urls)

urlpatterns = router.urls
