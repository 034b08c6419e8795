from django.urls import path

from webhooks import apis

app_name = "webhooks"

urlpatterns = [
    path("webhook-endpoints", apis.EndpointListApi.as_view(), name="endpoint-list"),
    path("webhook-endpoints/<str:endpoint_id>", apis.EndpointDetailApi.as_view(), name="endpoint-detail"),
    path("webhook-endpoints/<str:endpoint_id>/secret", apis.EndpointSecretApi.as_view(), name="endpoint-secret"),
    path("webhook-endpoints/<str:endpoint_id>/secret/rotate", apis.EndpointSecretRotateApi.as_view(), name="endpoint-secret-rotate"),
    path("webhook-deliveries", apis.DeliveryListApi.as_view(), name="delivery-list"),
    path("webhook-deliveries/<str:delivery_id>", apis.DeliveryDetailApi.as_view(), name="delivery-detail"),
    path("webhook-deliveries/<str:delivery_id>/replay", apis.DeliveryReplayApi.as_view(), name="delivery-replay"),
    path("webhook-secret", apis.TenantSecretApi.as_view(), name="tenant-secret"),
    path("webhook-secret/rotate", apis.TenantSecretRotateApi.as_view(), name="tenant-secret-rotate"),
]
