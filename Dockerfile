# initscope: one uvicorn process per container; its process pool is sized by INITSCOPE_WORKERS.
#   docker build -t initscope .            (here: podman-here build --format docker ...)
#   docker run -p 8000:8000 -e INITSCOPE_WORKERS=2 initscope

# ---- builder: a venv with the project and its runtime dependencies (wheels only) ----
FROM debian:trixie-slim AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, in a layer that only the lock invalidates: a change to the code or the
# README does not reinstall NumPy and SciPy. requirements.lock (`make lock`) pins every runtime
# package and its hashes: the image holds exactly the versions CI tested.
COPY requirements.lock ./
RUN pip install --no-cache-dir --only-binary=:all: --require-hashes -r requirements.lock
# Then the project itself (no dev extras). Test suites in site-packages are dead weight, and
# pip is not needed at run time.
COPY pyproject.toml README.md ./
COPY service/ service/
RUN pip install --no-cache-dir --no-deps . \
    && find /opt/venv/lib -depth -type d -name tests -path '*site-packages/*' -exec rm -rf {} + \
    && pip uninstall -y pip

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
