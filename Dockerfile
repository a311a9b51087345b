# The federax image for a Ray cluster (docs/ray.md, "Kubernetes"): every Ray node runs it, so
# workers import the same federax (and your client functions' modules, if you add them here).
#   docker build -t federax:dev .
# Untested here (no container engine on the development machine): see docs/ray.md.
FROM python:3.11-slim

# KubeRay's readiness probes call wget; bash runs its `ray start` commands.
RUN apt-get update && apt-get install -y --no-install-recommends wget bash \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/federax
COPY pyproject.toml README.md LICENSE ./
COPY federax ./federax
# `ray[default]` adds the dashboard agent that `ray start` and KubeRay's health checks use; its
# version is pinned to deploy/kuberay/raycluster.yaml's rayVersion (and the tested Ray).
ARG RAY_VERSION=2.60.0
RUN pip install --no-cache-dir ".[ray,cli]" "ray[default]==${RAY_VERSION}" \
    && python -c "import federax, ray; print('federax', federax.__version__, 'ray', ray.__version__)"

# Ray's nodes bind their own ports; federax needs none. A plain `docker run` gets a shell.
CMD ["bash"]
