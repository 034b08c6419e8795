from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from core import views as core_views
from jobs import playground, staff_views

urlpatterns = [
    path("v1/schema", SpectacularAPIView.as_view(), name="schema"),
    # Split: Swagger UI's init script is a file, not inline (Content-Security-Policy).
    path("v1/docs", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
    path("v1/", include("jobs.urls")),
    path("v1/", include("webhooks.urls")),
    path("v1/", include("voices.urls")),
    # Staff only (admin login); before admin.site.urls, which would 404 them.
    path("admin/dashboard/", admin.site.admin_view(staff_views.dashboard), name="staff-dashboard"),
    path("admin/dashboard/data", admin.site.admin_view(staff_views.dashboard_data), name="staff-dashboard-data"),
    path("admin/", admin.site.urls),
    # Try the API in a browser (the page holds no key; the user pastes one).
    path("playground", playground.playground, name="playground"),
    path("playground/", playground.playground),
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("metrics", core_views.metrics, name="metrics"),
    path("edge-error/<int:status>", core_views.edge_error, name="edge-error"),
]

handler400 = "core.views.bad_request"
handler404 = "core.views.not_found"
handler500 = "core.views.server_error"
