"""Static checks of deploy/: Dockerfile, compose file and Kubernetes manifests (no network)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
