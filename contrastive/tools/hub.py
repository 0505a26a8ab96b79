"""``contrastive export RUN_DIR [OUT] --push REPO_ID``: upload an export folder to the Hugging Face Hub.

huggingface_hub does the work (``HfApi.create_repo(exist_ok=True)`` then ``upload_folder``), with
its usual token: ``HF_TOKEN`` or the one ``hf auth login`` stored (``huggingface-cli login``
before huggingface_hub 1.0); ``HF_ENDPOINT`` points it at another Hub.  huggingface_hub is the
optional ``hub`` extra (``pip install 'contrastive-ssl[hub]'``).
"""

from __future__ import annotations

from pathlib import Path

from contrastive._version import __version__
from contrastive.errors import ExportError

INSTALL = "pip install 'contrastive-ssl[hub]' (or pip install huggingface_hub)"
LOGIN = "log in with `hf auth login` (`huggingface-cli login` before huggingface_hub 1.0) or set HF_TOKEN"


def check_ready(repo_id: str) -> None:
    """Raise [`ExportError`][contrastive.errors.ExportError] (one line, with the fix) unless ``repo_id`` can be pushed to:
    huggingface_hub installed, ``repo_id`` of the form ``NAME`` or ``USER/NAME``, a token found.
    Nothing is sent over the network."""
    try:
        import huggingface_hub
        from huggingface_hub.utils import HFValidationError, validate_repo_id
    except ImportError as exc:
        raise ExportError(f"--push needs huggingface_hub, which is not installed: {INSTALL}") from exc
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise ExportError(f"--push {repo_id!r} is not a Hub repo id (USER/NAME or NAME): {exc}") from exc
    if huggingface_hub.get_token() is None:
        raise ExportError(f"--push {repo_id}: no Hugging Face token found; {LOGIN}")


def push(folder: str | Path, repo_id: str, *, private: bool = False) -> str:
    """Create the model repo ``repo_id`` if it does not exist (``private``: as a private repo; an
    existing repo keeps its visibility) and upload every file of ``folder`` to it in one commit.
    Returns the commit's URL."""
    check_ready(repo_id)
    from huggingface_hub import HfApi

    folder = Path(folder)
    api = HfApi(library_name="contrastive-ssl", library_version=__version__)
    step = "create the repo"
    try:
        repo = api.create_repo(repo_id, repo_type="model", private=True if private else None, exist_ok=True)
        step = "upload"
        commit = api.upload_folder(repo_id=repo.repo_id, folder_path=str(folder), repo_type="model",
                                   commit_message=f"contrastive export ({__version__})")
    # huggingface_hub raises its HTTP library's classes for transport errors (requests, httpx or
    # httpx2 by version) besides its own HfHubHTTPError: any failure here is the Hub's or the
    # network's, reported in one line (--debug shows the traceback).
    except Exception as exc:
        message = " ".join(str(exc).split())[:300]
        raise ExportError(f"--push {repo_id}: could not {step} ({type(exc).__name__}: {message}); the export is in "
                          f"{folder}: retry with hf upload {repo_id} {folder}") from exc
    return str(commit.commit_url)
