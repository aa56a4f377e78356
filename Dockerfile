# initscope: one uvicorn process per container; its process pool is sized by INITSCOPE_WORKERS.
#   docker build -t initscope .            (here: podman-here build --format docker ...)
#   docker run -p 8000:8000 -e INITSCOPE_WORKERS=2 initscope

# ---- builder: a venv with the project and its runtime dependencies (wheels only) ----
FROM debian:trixie-slim AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv binutils \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, in a layer that only the lock invalidates: a change to the code or the
# README does not reinstall NumPy and matplotlib. requirements.lock (`make lock`) pins every
# runtime package and its hashes: the image holds exactly the versions CI tested.
COPY requirements.lock ./
RUN pip install --no-cache-dir --only-binary=:all: --require-hashes -r requirements.lock
# Then the project itself (no dev extras), and out with what nothing reads at run time: test
# suites, bytecode caches, stubs, headers, pip, debug information (scripts/slim_venv.sh).
COPY pyproject.toml README.md ./
COPY service/ service/
COPY scripts/slim_venv.sh /usr/local/bin/
RUN pip install --no-cache-dir --no-deps . \
    && slim_venv.sh /opt/venv
# Bytecode for what serving imports, and only that: the app, uvicorn's loop and protocols, the
# workers' preload, one analysis drawn as a PNG. The runtime root is read-only, so this is the
# one chance to write it; with none, start-up compiles (~1.6x slower to ready), and caching
# every module would cost twice the space (18 MB here against ~40 MB).
RUN python -c "import importlib, uvicorn; \
from initscope.config import Settings; from initscope.http.server import create_app; \
from initscope.runner import PRELOAD; [importlib.import_module(m) for m in PRELOAD]; \
config = uvicorn.Config(create_app(Settings())); config.load(); config.get_loop_factory()" \
    && initscope analyze --format png -o /tmp/warm.png service/initscope/examples/analyze-relu-he.json \
    && rm -rf /tmp/warm.png /root/.cache

# ---- runtime: python3, the venv, a non-root user; no compilers, no pip ----
FROM debian:trixie-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin initscope
COPY --from=builder /opt/venv /opt/venv
# MPLCONFIGDIR: matplotlib wants a writable config/cache dir; /tmp is writable here and is an
# emptyDir under Kubernetes (read-only root). Its font cache is built at startup (the bundled
# DejaVu fonts only) before the first request.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('INITSCOPE_PORT', '8000'), timeout=4)"]
# Exec form: python is PID 1 and gets SIGTERM itself; uvicorn stops accepting, finishes the
# requests in flight, then the lifespan shuts the process pool down.
CMD ["python", "-m", "initscope"]
