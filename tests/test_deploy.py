"""The deployment files stay consistent: the Dockerfile installs federax's Ray and CLI extras on
python:3.11-slim, and the KubeRay manifest runs that one image on every node."""

import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_dockerfile_installs_federax_with_ray_and_cli():
  text = (ROOT / "Dockerfile").read_text()
  assert text.count("\nFROM ") + text.startswith("FROM ") == 1
  assert "FROM python:3.11-slim" in text
  assert 'pip install --no-cache-dir ".[ray,cli]"' in text
  assert "COPY federax ./federax" in text and "COPY pyproject.toml" in text


def test_raycluster_manifest_runs_one_image_everywhere():
  yaml = pytest.importorskip("yaml")
  spec = yaml.safe_load((ROOT / "deploy" / "kuberay" / "raycluster.yaml").read_text())
  assert (spec["apiVersion"], spec["kind"]) == ("ray.io/v1", "RayCluster")
  pods = [spec["spec"]["headGroupSpec"]] + spec["spec"]["workerGroupSpecs"]
  images = {c["image"] for p in pods for c in p["template"]["spec"]["containers"]}
  assert images == {"REGISTRY/federax:dev"}
  assert spec["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
  dockerfile = (ROOT / "Dockerfile").read_text()
  assert f"ARG RAY_VERSION={spec['spec']['rayVersion']}\n" in dockerfile  # The image's Ray.
