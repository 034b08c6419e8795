"""The playground page itself (no browser): served to anyone, holds no key,
references only static files that exist, and describes this deployment's
engines from their metadata."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(db):
    return Client()


def _catalog(html: str) -> dict:
    match = re.search(r'<script id="pg-catalog" type="application/json">(.*?)</script>', html, re.DOTALL)
    assert match, "the catalog is embedded as JSON data, not as script"
    return json.loads(match.group(1))


@pytest.mark.parametrize("path", ["/playground", "/playground/"])
def test_page_is_served_without_login(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert [template.name for template in response.templates] == ["playground.html"]
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "no-referrer"
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.cookies == {}  # no session, no CSRF cookie: nothing to steal or to keep


def test_head_works_and_other_methods_do_not(client):
    assert client.head("/playground").status_code == 200
    assert client.post("/playground").status_code == 405


def test_static_files_it_references_exist_and_no_cdn(client):
    html = client.get("/playground").content.decode()
    references = re.findall(r'(?:src|href)="([^"]+)"', html)
    static = [ref for ref in references if ref.startswith(settings.STATIC_URL)]  # "/static/"
    assert {Path(ref).name for ref in static} == {"playground.js", "playground.css"}
    for ref in static:
        assert (ROOT / "static" / ref.removeprefix(settings.STATIC_URL)).is_file(), ref
    external = [ref for ref in references if re.match(r"^(https?:)?//", ref)]
    assert external == []
    assert "<script>" not in html  # no inline code (the CSP would refuse it)


def test_no_key_or_secret_is_embedded(client, tenant):
    from tenants.services import api_key_create

    _, raw_key = api_key_create(tenant=tenant, name="browser")
    html = client.get("/playground").content.decode()
    prefix, secret = raw_key.split(".", 1)
    assert raw_key not in html and secret not in html and prefix not in html
    assert settings.SECRET_KEY not in html
    assert "csrfmiddlewaretoken" not in html


def test_catalog_lists_usable_engines_from_their_metadata(client):
    catalog = _catalog(client.get("/playground").content.decode())
    tts = {engine["name"]: engine for engine in catalog["tts_engines"]}
    assert {"piper", "espeak"} <= set(tts)
    assert "cosyvoice" not in tts  # no COSYVOICE_URLS here: not offered
    assert {"en", "de", "cmn", "yue"} <= set(tts["espeak"]["languages"])
    assert tts["piper"]["options"] == ["speed", "voice"]
    video = {engine["name"]: engine for engine in catalog["video_engines"]}
    assert "builtin" in video and "sonic" not in video
    assert video["builtin"]["resolutions"] == [512, 768, 1024]
    assert catalog["default_video_engine"] == "builtin"
    assert catalog["formats"] == ["aac", "flac", "mp3", "ogg", "pcm", "wav"]
    assert catalog["talking_head_defaults"]["fps"] == 25
    assert catalog["default_tts_engine"] == {"neural": "piper", "neural_languages": ["en", "en-us"], "other": "espeak"}


def test_the_script_keeps_the_key_in_session_storage_only():
    """A guard on the source: the browser tests check the behaviour, this
    keeps the obvious regressions out (localStorage, cookies, innerHTML)."""
    source = (ROOT / "static" / "mynah" / "playground.js").read_text()
    assert "window.sessionStorage.setItem(KEY_STORAGE, key)" in source
    forbidden = [
        r"\blocalStorage\s*[.\[]",
        r"document\.cookie",
        r"\.(innerHTML|outerHTML)\b",
        r"insertAdjacentHTML",
        r"\beval\(",
        r"new Function",
        r"\?key=|[?&]api_key=",
    ]
    for pattern in forbidden:
        assert not re.search(pattern, source), pattern
