from django.urls import path

from voices import apis

app_name = "voices"

urlpatterns = [
    path("voices", apis.VoiceListCreateApi.as_view(), name="list"),
    path("voices/<str:voice_id>", apis.VoiceDetailApi.as_view(), name="detail"),
]
