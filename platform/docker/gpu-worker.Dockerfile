# syntax=docker/dockerfile:1
# mynah-comfyui-sonic: the GPU half of a video worker. Mynah's `sonic`
# engine is an adapter: it drives a ComfyUI server with the ComfyUI_Sonic
# nodes and VideoHelperSuite's VHS_VideoCombine over HTTP/WebSocket. This
# image is that server; it runs next to a mynah-worker container in the same
# pod (platform/k8s/worker-video.yaml) or compose project (profile "gpu"),
# which reaches it on port 8188.
#
# Nothing is downloaded at run time, and no weights are baked in: mount them
# at /opt/ComfyUI/models (ComfyUI's models directory, where ComfyUI_Sonic
# looks too), laid out as platform/README.md shows.
#
#   docker build -f platform/docker/gpu-worker.Dockerfile -t mynah-comfyui-sonic .
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# Exact commits: a branch or a tag could move under the same name.
# ComfyUI 0.8.1 (comfyui_version.py at this commit).
ARG COMFYUI_COMMIT=071ff3e208ab8a6d4ac1a9d1bdcf5b73b69ed92c
# smthemex/ComfyUI_Sonic: SONICTLoader, SONIC_PreData, SONICSampler.
ARG SONIC_COMMIT=85562349dd7714532c5477709f2bb0a70debd213
# Kosinkadink/ComfyUI-VideoHelperSuite: VHS_VideoCombine (H.264 + audio).
ARG VHS_COMMIT=4ee72c065db22c9d96c2427954dc69e7b908444b
# CUDA builds of torch; the custom nodes need torchaudio and torchvision too.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG TORCH_VERSION=2.9.1
ARG TORCHVISION_VERSION=0.24.1
ARG TORCHAUDIO_VERSION=2.9.1

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    PATH=/opt/venv/bin:$PATH

# ffmpeg for VideoHelperSuite, libgl1 and libglib2.0-0 for opencv-python.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv git ca-certificates ffmpeg libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/venv \
    && pip install --index-url "$TORCH_INDEX_URL" \
        "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" "torchaudio==$TORCHAUDIO_VERSION" \
    && printf 'torch==%s\ntorchvision==%s\ntorchaudio==%s\n' "$TORCH_VERSION" "$TORCHVISION_VERSION" "$TORCHAUDIO_VERSION" \
        > /opt/torch-constraints.txt

RUN set -eu; \
    fetch() { mkdir -p "$2"; git -C "$2" init -q; git -C "$2" remote add origin "$1"; \
              git -C "$2" fetch -q --depth 1 origin "$3"; git -C "$2" checkout -q FETCH_HEAD; rm -rf "$2/.git"; }; \
    fetch https://github.com/comfyanonymous/ComfyUI.git /opt/ComfyUI "$COMFYUI_COMMIT"; \
    fetch https://github.com/smthemex/ComfyUI_Sonic.git /opt/ComfyUI/custom_nodes/ComfyUI_Sonic "$SONIC_COMMIT"; \
    fetch https://github.com/Kosinkadink/ComfyUI-VideoHelperSuite.git /opt/ComfyUI/custom_nodes/ComfyUI-VideoHelperSuite "$VHS_COMMIT"

# The torch builds above stay (constraints); the rest as each project lists it.
RUN pip install -c /opt/torch-constraints.txt \
        -r /opt/ComfyUI/requirements.txt \
        -r /opt/ComfyUI/custom_nodes/ComfyUI_Sonic/requirements.txt \
        -r /opt/ComfyUI/custom_nodes/ComfyUI-VideoHelperSuite/requirements.txt

# Uploads (input), renders (output), temp and user settings are the only
# writable places; the code and the mounted models stay read-only.
RUN groupadd --system --gid 10001 comfy \
    && useradd --system --uid 10001 --gid comfy --create-home --home-dir /home/comfy comfy \
    && mkdir -p /opt/ComfyUI/input /opt/ComfyUI/output /opt/ComfyUI/temp /opt/ComfyUI/user /opt/ComfyUI/models \
    && chown -R comfy:comfy /opt/ComfyUI/input /opt/ComfyUI/output /opt/ComfyUI/temp /opt/ComfyUI/user

WORKDIR /opt/ComfyUI
USER 10001
EXPOSE 8188
# ComfyUI has no authentication: in Kubernetes the pod's worker is its only
# client and the container listens on 127.0.0.1 (args there); compose keeps
# it on the project's private network, unpublished.
CMD ["python", "main.py", "--listen", "0.0.0.0", "--port", "8188", "--disable-auto-launch"]
