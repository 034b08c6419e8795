from django.urls import path

from jobs import apis, openai_api

app_name = "jobs"

urlpatterns = [
    path("tts", apis.TtsCreateApi.as_view(), name="tts-create"),
    path("jobs", apis.JobListApi.as_view(), name="list"),
    path("jobs/<str:job_id>", apis.JobDetailApi.as_view(), name="detail"),
    path("talking-head", apis.TalkingHeadCreateApi.as_view(), name="talking-head-create"),
    path("jobs/<str:job_id>/result", apis.JobResultApi.as_view(), name="result"),
    path("jobs/<str:job_id>/result/<slug:role>", apis.JobResultFileApi.as_view(), name="result-file"),
    path("jobs/<str:job_id>/cancel", apis.JobCancelApi.as_view(), name="cancel"),
    path("jobs/<str:job_id>/events", apis.JobEventsApi.as_view(), name="events"),
    path("jobs/<str:job_id>/audio-stream", apis.JobAudioStreamApi.as_view(), name="audio-stream"),
    path("usage", apis.UsageApi.as_view(), name="usage"),
    # OpenAI-compatible (jobs/openai_api.py).
    path("audio/speech", openai_api.SpeechApi.as_view(), name="openai-speech"),
    path("models", openai_api.ModelListApi.as_view(), name="openai-models"),
]
