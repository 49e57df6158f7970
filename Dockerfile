# Data Engine app / worker image. Build: docker build -t dataengine .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY engine engine
COPY db db
COPY annotator_ui annotator_ui
COPY scripts scripts
# CPU wheels of torch keep the image small; GPU workers build with the CUDA index
# (docker-compose.yml's `gpu` profile: TORCH_INDEX=https://download.pytorch.org/whl/cu128).
# DATAENGINE_EXTRAS="[ray]" adds Ray for the `ray` profile's head and workers.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG DATAENGINE_EXTRAS=
RUN pip install --index-url "${TORCH_INDEX}" torch==2.14.1 torchvision==0.29.1 \
    && pip install ."${DATAENGINE_EXTRAS}"
ENV DATAENGINE_DATA_DIR=/data
VOLUME ["/data", "/models"]
EXPOSE 8000
CMD ["dataengine", "serve", "--host", "0.0.0.0", "--port", "8000"]
