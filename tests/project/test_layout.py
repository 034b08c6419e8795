"""Guards for the layout rules in ARCHITECTURE.md."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_platform_dir_is_not_a_python_package():
    assert (ROOT / "platform").is_dir()
    assert not list((ROOT / "platform").rglob("*.py")), "platform/ holds deployment files only"


def test_stdlib_platform_module_is_not_shadowed():
    # Run from the repository root, where a platform/__init__.py would win.
    code = "import platform, sys; print(platform.__file__); print(platform.system())"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    module_file, system = out.splitlines()
    assert not module_file.startswith(str(ROOT / "platform"))
    assert system == "Linux"


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_engines_never_import_django():
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_modules(path) & {"django", "rest_framework", "dramatiq"})
        for path in (ROOT / "engines").rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_web_process_never_imports_model_runtimes():
    """Load the WSGI app, resolve every URL and submit a job in-process: no
    torch, onnxruntime, piper, PyAV, LiteRT (face models), pocketsphinx may be imported."""
    code = """
import os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "config.test_settings"
from config.wsgi import application
from django.test.utils import setup_test_environment
from django.core.management import call_command
from django.db import connection
connection.creation.create_test_db(verbosity=0)
from rest_framework.test import APIClient
from tenants.services import tenant_create, api_key_create
_, key = api_key_create(tenant=tenant_create(slug="t"), name="k")
client = APIClient(); client.credentials(HTTP_AUTHORIZATION="Bearer " + key)
for lang in ("en", "cmn"):
    response = client.post("/v1/tts", {"text": "hello", "language": lang}, format="json")
    assert response.status_code == 202, response.content
# A voice upload (analysis is the worker's) and speech in a voice.
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
settings.VOICE_ANALYSIS_WAIT_S = 0
upload = SimpleUploadedFile("v.wav", b"RIFF" + bytes(5000), content_type="audio/wav")
response = client.post("/v1/voices", {"audio": upload, "name": "v"}, format="multipart")
assert response.status_code == 201, response.content
from voices.models import VoicePrompt
VoicePrompt.objects.update(status="ready", content_sha256="0" * 64)
response = client.post("/v1/tts", {"text": "hi", "voice_id": response.json()["id"]}, format="json")
assert response.status_code == 202, response.content
# Talking heads: the image is checked here (Pillow), faces and audio in workers.
import io
from PIL import Image
png = io.BytesIO(); Image.new("RGB", (64, 64)).save(png, "PNG")
image = SimpleUploadedFile("p.png", png.getvalue(), content_type="image/png")
audio = SimpleUploadedFile("a.wav", b"RIFF" + bytes(5000), content_type="audio/wav")
response = client.post("/v1/talking-head", {"image": image, "audio": audio}, format="multipart")
assert response.status_code == 202, response.content
image.seek(0)
response = client.post("/v1/talking-head", {"image": image, "text": "Hello."}, format="multipart")
assert response.status_code == 202, response.content
# The playground page lists every engine from its metadata: no model runtime either.
from django.test import Client
assert Client().get("/playground").status_code == 200
import jobs.actors
banned = [m for m in ("torch", "onnxruntime", "piper", "av", "ai_edge_litert", "websockets", "pocketsphinx") if m in sys.modules]
print("BANNED", banned)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "BANNED []" in result.stdout
