"""Credentials and endpoints: the standard environment plus a recipe's `storage_options`.

One normalised form feeds both clients: obstore (what ziggurat writes with) and GDAL (what reads
rasters and vectors). `storage_options` takes obstore's names, fsspec/s3fs's (``key``, ``secret``,
``client_kwargs.endpoint_url``, ``anon``: what mapchete recipes carry) and the environment
variable names (``AWS_ACCESS_KEY_ID``...). The values are secrets: they are never written into
provenance or STAC (`redact`).
"""

from __future__ import annotations

import os
from typing import Any, Mapping
from urllib.parse import urlsplit

from ziggurat.core.location import Location

#: Accepted spellings -> the normalised name.
_ALIASES = {
    "access_key_id": "access_key_id", "key": "access_key_id", "aws_access_key_id": "access_key_id",
    "secret_access_key": "secret_access_key", "secret": "secret_access_key",
    "aws_secret_access_key": "secret_access_key",
    "session_token": "session_token", "token": "session_token", "aws_session_token": "session_token",
    "endpoint_url": "endpoint", "endpoint": "endpoint", "aws_endpoint_url": "endpoint",
    "aws_s3_endpoint": "endpoint",
    "region": "region", "region_name": "region", "aws_region": "region", "aws_default_region": "region",
    "anon": "anonymous", "skip_signature": "anonymous", "aws_no_sign_request": "anonymous",
    "profile": "profile", "aws_profile": "profile",
}
#: GDAL settings that make remote (COG) reads efficient; the user's environment wins.
GDAL_REMOTE_DEFAULTS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",   # no LIST of the folder on every open
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_VERSION": "2",
    "GDAL_HTTP_MAX_RETRY": "5",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "VSI_CACHE": "TRUE",
    "CPL_VSIL_CURL_CHUNK_SIZE": "131072",
}


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def normalise(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Known keys under their normalised names; unknown ones kept as given (for obstore)."""
    out: dict[str, Any] = {}
    for name, value in (storage_options or {}).items():
        if name == "client_kwargs" and isinstance(value, Mapping):
            out.update(normalise(value))
            continue
        out[_ALIASES.get(str(name).lower(), str(name))] = value
    return out


def _endpoint(opts: Mapping[str, Any]) -> str | None:
    """The S3 endpoint URL: storage_options, then AWS_ENDPOINT_URL(_S3), then GDAL's AWS_S3_ENDPOINT."""
    value = opts.get("endpoint") or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if value:
        return str(value)
    gdal = os.environ.get("AWS_S3_ENDPOINT")
    if gdal:
        scheme = "https" if _truthy(os.environ.get("AWS_HTTPS", "YES")) else "http"
        return gdal if "://" in gdal else f"{scheme}://{gdal}"
    return None


def obstore_config(location: Location, storage_options: Mapping[str, Any] | None) -> tuple[dict[str, Any],
                                                                                          dict[str, Any]]:
    """(store config, client options) for obstore; the environment fills what is not given."""
    opts = normalise(storage_options)
    config: dict[str, Any] = {}
    client: dict[str, Any] = {"timeout": "120s", "connect_timeout": "10s"}
    if location.scheme == "s3":
        config.update({k: v for k, v in opts.items()
                       if k not in ("endpoint", "anonymous", "profile") and not k.isupper()})
        endpoint = _endpoint(opts)
        if endpoint:
            config["endpoint"] = endpoint
            if endpoint.startswith("http://"):
                client["allow_http"] = True
        for env, name in (("AWS_ACCESS_KEY_ID", "access_key_id"), ("AWS_SECRET_ACCESS_KEY", "secret_access_key"),
                          ("AWS_SESSION_TOKEN", "session_token")):
            if name not in config and os.environ.get(env):
                config[name] = os.environ[env]
        if "region" not in config:
            config["region"] = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        if _truthy(opts.get("anonymous", os.environ.get("AWS_NO_SIGN_REQUEST", "no"))):
            config["skip_signature"] = True
        if _truthy(os.environ.get("AWS_VIRTUAL_HOSTING", "")):
            config["virtual_hosted_style_request"] = True
    else:
        config.update({k: v for k, v in opts.items() if k != "anonymous" and not k.isupper()})
        if _truthy(opts.get("anonymous", False)):
            config["skip_signature"] = True
    return config, client


def gdal_options(location: Location, storage_options: Mapping[str, Any] | None) -> dict[str, str]:
    """GDAL configuration options to read `location` (empty for local paths)."""
    if location.is_local or location.scheme == "vsi":
        return {}
    out = dict(GDAL_REMOTE_DEFAULTS)
    opts = normalise(storage_options)
    if location.scheme == "s3":
        endpoint = _endpoint(opts)
        if endpoint and "AWS_S3_ENDPOINT" not in os.environ:
            parts = urlsplit(endpoint)
            out["AWS_S3_ENDPOINT"] = parts.netloc + parts.path.rstrip("/")
            out["AWS_HTTPS"] = "YES" if parts.scheme == "https" else "NO"
            out.setdefault("AWS_VIRTUAL_HOSTING", "FALSE")
        for name, env in (("access_key_id", "AWS_ACCESS_KEY_ID"), ("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
                          ("session_token", "AWS_SESSION_TOKEN"), ("region", "AWS_REGION"),
                          ("profile", "AWS_PROFILE")):
            if opts.get(name):
                out[env] = str(opts[name])
        if _truthy(opts.get("anonymous", False)):
            out["AWS_NO_SIGN_REQUEST"] = "YES"
    for name, value in opts.items():  # GDAL's own names pass through (GS_*, AZURE_*, GDAL_HTTP_*)
        if name.isupper() and name.startswith(("GS_", "GOOGLE_", "AZURE_", "GDAL_", "CPL_", "VSI")):
            out[name] = str(value)
    return out


def apply_gdal_options(location: Location, storage_options: Mapping[str, Any] | None) -> None:
    """Make GDAL in this process (the parent or a worker) reach `location`.

    GDAL reads configuration options from the environment, so they are set there: the defaults
    only where the user set nothing, credentials from `storage_options` always (they were asked for).
    """
    explicit = {k for k in gdal_options(Location("s3", "x", ""), storage_options)
                if k not in GDAL_REMOTE_DEFAULTS and k not in ("AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING")}
    for name, value in gdal_options(location, storage_options).items():
        if name in explicit or name not in os.environ:
            os.environ[name] = value


def redact(storage_options: Mapping[str, Any] | None) -> dict[str, str]:
    """What provenance may record: the option names, never their values."""
    return {str(name): "<redacted>" for name in (storage_options or {})}


__all__ = ["GDAL_REMOTE_DEFAULTS", "apply_gdal_options", "gdal_options", "normalise", "obstore_config", "redact"]
