"""Fetching the registered models that are downloaded rather than shipped: once, checked, converted.

The cache folder is ``$WAVEFLOW_CACHE``, else ``$XDG_CACHE_HOME/waveflow``, else
``~/.cache/waveflow``; each model has a folder of its own::

    <cache>/<name>/<filename>        the file as published, once complete and checked
    <cache>/<name>/<filename>.part   a download in progress, resumed (HTTP Range) by the next attempt
    <cache>/<name>/waveflow.pt       the converted waveflow checkpoint, which every later load reads
    <cache>/<name>/manifest.json     URL, sizes and sha256 of both files; written last

**Nothing half-written is ever taken for complete.** A download goes to ``<filename>.part``, is
checked there, and only then renamed to ``<filename>``; a ``.part`` file is only ever resumed,
never loaded. The converted checkpoint and the manifest are written atomically (temporary file,
fsync, rename), and the manifest, written last, is what marks a model as ready. A lock on the
model's folder (POSIX ``flock``) keeps two processes from downloading into the same file.

**Checks.** The byte size and sha256 recorded in the registry, when it has them; a transfer that
delivers less than the server's ``Content-Length`` is resumed (or fails), never accepted. A file
that fails its checks is deleted and the error says so. NVIDIA publishes no digests for its files:
for those, the sha256 measured on the first download is recorded in the manifest and checked on
every later use. Every file, checked or not, is then read by the safe reader
(:func:`waveflow.checkpoint.read_checkpoint`, over :mod:`waveflow.safe_load`): no pickled
code runs, and the tensors are checked against the config and for NaN/Inf before conversion.

**Offline.** Put the file at ``<cache>/<name>/<filename>`` by hand (it is checked and converted
like a download), or point ``WAVEFLOW_CACHE`` at a folder that already holds the model.

Only the standard library speaks HTTP here (``urllib``); ``http``, ``https`` and ``file`` URLs work.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from waveflow import __version__
from waveflow.errors import CheckpointError, InputError, OutputError
from waveflow.fileio import atomic_write_text, fsync_dir
from waveflow.pretrained import DownloadableModel, sha256_of

CACHE_ENV = "WAVEFLOW_CACHE"
CONVERTED = "waveflow.pt"
MANIFEST = "manifest.json"
PART_SUFFIX = ".part"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0
# A transfer that breaks off is resumed this many times within one call (waiting RETRY_DELAY_S,
# then twice that, ...); after that the .part file stays for the next call to resume.
RETRIES = 3
RETRY_DELAY_S = 2.0

_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


class DownloadError(InputError):
    """A registered model could not be fetched: offline, refused, not found, or a web page instead.

    Exit code 2, like any other input that is not there.
    """


class DownloadIntegrityError(CheckpointError):
    """A fetched file is not the one registered (size or sha256), or not a checkpoint; it was deleted."""


# -- where things go ------------------------------------------------------------------------------
def cache_dir() -> Path:
    """``$WAVEFLOW_CACHE``, else ``$XDG_CACHE_HOME/waveflow``, else ``~/.cache/waveflow`` (not created)."""
    explicit = os.environ.get(CACHE_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "waveflow"


def model_dir(model: DownloadableModel) -> Path:
    return cache_dir() / model.name


def source_path(model: DownloadableModel) -> Path:
    """Where the published file lies once downloaded (or where to put it by hand)."""
    return model_dir(model) / model.filename


def converted_path(model: DownloadableModel) -> Path:
    return model_dir(model) / CONVERTED


def state(model: DownloadableModel) -> str:
    """What the cache holds for ``model``, in words (for listings)."""
    folder = model_dir(model)
    converted, raw = folder / CONVERTED, folder / model.filename
    part = raw.with_name(raw.name + PART_SUFFIX)
    if (folder / MANIFEST).is_file() and converted.is_file():
        return f"ready: {converted} ({converted.stat().st_size / 1e6:.1f} MB)"
    if raw.is_file():
        return f"downloaded, not converted yet: {raw}"
    if part.is_file():
        return f"partly downloaded ({part.stat().st_size:,} bytes), resumes on next use: {part}"
    return f"not downloaded (goes to {folder})"


# -- the one entry point ----------------------------------------------------------------------------
def fetch(
    model: DownloadableModel,
    *,
    force: bool = False,
    sha256: str | None = None,
    verify: bool = True,
    disable_progress: bool | None = None,
) -> Path:
    """The converted waveflow checkpoint of ``model``: downloaded, checked and converted on first use.

    Args:
        force: forget what the cache holds for ``model`` and fetch it afresh.
        sha256: the digest the published file must have (overrides the registry's).
        verify: check the cached converted file against the sha256 in its manifest (a full read).
        disable_progress: tqdm's ``disable`` for the progress bar (``None``: only on a terminal).

    Raises:
        DownloadError: the file could not be fetched (the message names the URL and where to put
            the file by hand).
        DownloadIntegrityError: the file is not the registered one, or not a checkpoint (deleted).
        CheckpointError: a file the registry vouches for (by sha256) that the reader refuses.
        OutputError: the cache folder cannot be created.
    """
    expected = sha256.lower() if sha256 is not None else model.sha256
    if expected is not None and not _SHA256.fullmatch(expected):
        raise InputError(f"sha256 must be 64 hexadecimal digits, got {expected!r}")
    folder = model_dir(model)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create the download cache {folder}: {exc.strerror or exc} (set {CACHE_ENV} to another folder)"
        ) from exc
    try:
        with _locked(folder):
            return _fetch(
                model, folder, expected, force=force, verify=verify, disable_progress=disable_progress
            )
    except BaseException:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if the failure left it empty
        raise


def _fetch(
    model: DownloadableModel,
    folder: Path,
    expected: str | None,
    *,
    force: bool,
    verify: bool,
    disable_progress: bool | None,
) -> Path:
    raw = folder / model.filename
    part = raw.with_name(raw.name + PART_SUFFIX)
    converted, manifest_path = folder / CONVERTED, folder / MANIFEST
    if force:
        for path in (manifest_path, converted, raw, part):
            path.unlink(missing_ok=True)
    manifest = _read_manifest(manifest_path)
    recorded = manifest.get("source_sha256") if manifest else None
    if manifest is not None and converted.is_file():
        if (expected is None or recorded == expected) and (not verify or _intact(converted, manifest)):
            return converted
        # A damaged converted file or another source digest: rebuild from the source file below.
        manifest_path.unlink()
        converted.unlink()

    # Without a registered digest, the one recorded at the first download holds from then on.
    wanted = expected or recorded
    if raw.is_file():  # downloaded earlier, or put there by hand
        digest = _check(raw, model, wanted, f"{raw} (in the cache)")
    else:
        _download(model, part, disable_progress)
        digest = _check(part, model, wanted, f"the file downloaded from {model.url}")
        os.replace(part, raw)  # only now, checked, does the file get its name
        fsync_dir(folder)
    _convert(model, raw, converted, manifest_path, digest, vouched=wanted is not None)
    return converted


# -- checks ---------------------------------------------------------------------------------------
def _check(path: Path, model: DownloadableModel, expected: str | None, origin: str) -> str:
    """``path``'s sha256, after checking its size and digest against the registry; a bad file is deleted."""
    size = path.stat().st_size
    if model.size is not None and size != model.size:
        path.unlink(missing_ok=True)
        raise DownloadIntegrityError(
            f"{origin} has {size:,} bytes, but {model.name} has {model.size:,}; removed it "
            f"(run the command again to download it afresh)"
        )
    digest = sha256_of(path)
    if expected is not None and digest != expected:
        path.unlink(missing_ok=True)
        raise DownloadIntegrityError(
            f"{origin} has sha256 {digest}, but {model.name} has {expected}; removed it "
            f"(run the command again to download it afresh)"
        )
    return digest


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _intact(converted: Path, manifest: dict[str, Any]) -> bool:
    if converted.stat().st_size != manifest.get("converted_bytes"):
        return False
    return sha256_of(converted) == manifest.get("converted_sha256")


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (POSIX ``flock`` on the folder itself: no lock file is left)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        fcntl = None
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


# -- HTTP -----------------------------------------------------------------------------------------
def _by_hand(model: DownloadableModel) -> str:
    return (
        f"fetch it by hand from {model.page} and put it at {source_path(model)}, or set {CACHE_ENV} "
        f"to a folder that holds {model.name}/{model.filename}"
    )


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return " ".join(str(reason).split()) or type(reason).__name__


def _download(model: DownloadableModel, part: Path, disable_progress: bool | None) -> None:
    """Fetch ``model.url`` into ``part``, resuming what ``part`` already holds where the server allows."""
    url = model.url
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise InputError(f"{model.name}: cannot download {url!r} (only http, https and file URLs)")
    failures = 0
    bar = None
    try:
        while True:
            offset = part.stat().st_size if part.is_file() else 0
            if model.size is not None and offset >= model.size:
                if offset == model.size:
                    return  # an earlier attempt received every byte; checked next
                part.unlink()
                offset = 0
            headers = {"User-Agent": f"waveflow/{__version__}", "Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            try:
                response = urllib.request.urlopen(
                    urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S
                )
            except urllib.error.HTTPError as exc:
                exc.close()
                unsatisfied = _UNSATISFIED_RANGE.fullmatch(
                    (exc.headers or {}).get("Content-Range", "").strip()
                )
                if exc.code == 416 and offset and unsatisfied and int(unsatisfied.group(1)) == offset:
                    return  # nothing after the bytes already held: the .part file is whole; checked next
                if exc.code == 416 and offset and failures == 0:
                    part.unlink()  # the .part file does not fit the file the server has: start again
                    failures += 1
                    continue
                raise DownloadError(
                    f"cannot download {model.name} from {url}: HTTP {exc.code} {exc.reason}; {_by_hand(model)}"
                ) from None
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
                raise DownloadError(
                    f"cannot download {model.name} from {url} ({_reason(exc)}): check the network, or "
                    f"{_by_hand(model)}"
                ) from None
            with response:
                start, total = _response_span(response, offset, scheme)
                if start is None:  # the server answered with another range: start again
                    part.unlink(missing_ok=True)
                    failures += 1
                    if failures > RETRIES:
                        raise DownloadError(f"{url} answers ranges it was not asked for; {_by_hand(model)}")
                    continue
                if scheme != "file" and response.headers.get_content_type() == "text/html":
                    raise DownloadError(
                        f"{url} answered with a web page, not the checkpoint (Google Drive does so when "
                        f"its download quota is exceeded); {_by_hand(model)}"
                    )
                if model.size is not None and total is not None and total != model.size:
                    part.unlink(missing_ok=True)
                    raise DownloadIntegrityError(
                        f"{url} offers {total:,} bytes, but {model.name} has {model.size:,}; nothing was kept"
                    )
                bar = _progress(bar, total, start, model.name, disable_progress)
                received, error = _receive(response, part, start, bar)
            if error is None and (total is None or received == total):
                return
            failures += 1
            why = _reason(error) if error is not None else "the connection closed early"
            if failures > RETRIES:
                raise DownloadError(
                    f"downloading {model.name} from {url} broke off {failures} times, the last after "
                    f"{received:,} of {total if total is not None else '?'} bytes ({why}); run the command "
                    f"again to resume from {part}, or {_by_hand(model)}"
                )
            time.sleep(RETRY_DELAY_S * 2 ** (failures - 1))
    finally:
        if bar is not None:
            bar.close()


def _response_span(response: Any, offset: int, scheme: str) -> tuple[int | None, int | None]:
    """``(first byte this response carries, size of the whole file)``; ``(None, None)`` for a wrong range.

    A server that ignores ``Range`` answers 200 with the whole file: the download restarts at 0.
    """
    length_header = response.headers.get("Content-Length", "")
    length = int(length_header) if length_header.strip().isdigit() else None
    status = getattr(response, "status", None) or 200  # file: URLs carry no status
    if not offset or status != 206 or scheme == "file":
        return 0, length
    span = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if span is None or int(span.group(1)) != offset:
        return None, None
    if span.group(3) != "*":
        return offset, int(span.group(3))
    return offset, offset + length if length is not None else None


def _receive(response: Any, part: Path, start: int, bar: Any) -> tuple[int, BaseException | None]:
    """Write the response's body to ``part`` (appended at ``start``): ``(bytes held, transfer error)``.

    A broken connection is returned, not raised, so that the caller can resume; a failing write
    (a full disk) is raised.
    """
    received, error = start, None
    with open(part, "ab" if start else "wb") as f:
        while True:
            try:
                chunk = response.read(CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
                error = exc
                break
            if not chunk:
                break
            f.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
        f.flush()
        os.fsync(f.fileno())
    return received, error


def _progress(bar: Any, total: int | None, start: int, name: str, disable: bool | None) -> Any:
    from tqdm import tqdm

    if bar is None:
        return tqdm(
            total=total,
            initial=start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"downloading {name}",
            disable=disable,
        )
    bar.reset(total=total)
    bar.update(start)
    return bar


# -- conversion -----------------------------------------------------------------------------------
def _convert(
    model: DownloadableModel, raw: Path, converted: Path, manifest_path: Path, digest: str, *, vouched: bool
) -> None:
    """Read ``raw`` with the safe reader, write it as a waveflow checkpoint, then the manifest."""
    from waveflow.checkpoint import read_checkpoint, save_checkpoint

    try:
        ckpt = read_checkpoint(raw)
        network = ckpt.build_model()
    except CheckpointError as exc:
        if vouched:  # the registered digest matched: the file is the published one, keep it
            raise
        raw.unlink(missing_ok=True)  # nothing vouches for it: do not keep a file that is no checkpoint
        raise DownloadIntegrityError(
            f"{exc} (downloaded for {model.name} from {model.url}; removed it)"
        ) from None
    metadata = {
        **ckpt.metadata,
        "pretrained_name": model.name,
        "source_url": model.url,
        "source_sha256": digest,
        "source_format": ckpt.source_format,
    }
    save_checkpoint(converted, network, ckpt.config.mel, metadata=metadata)
    manifest = {
        "name": model.name,
        "url": model.url,
        "source_file": model.filename,
        "source_bytes": raw.stat().st_size,
        "source_sha256": digest,
        "source_format": ckpt.source_format,
        "converted_file": CONVERTED,
        "converted_bytes": converted.stat().st_size,
        "converted_sha256": sha256_of(converted),
        "waveflow_version": __version__,
    }
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
