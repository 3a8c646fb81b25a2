"""Registered models that are downloaded: fetched once, checked, resumed, refused, converted, loaded.

Nothing leaves this machine: the registry gets a test entry (monkeypatched) whose URL is a
``file://`` URL or an ``http.server`` on 127.0.0.1 serving NVIDIA's fixture checkpoints
(decompressed), and the cache is a folder under ``tmp_path`` (``WAVEFLOW_CACHE``).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import lzma
import re
import socket
import threading
from pathlib import Path

import pytest
import torch

from tests.conftest import NVIDIA_FIXTURES, REPO, speech_like
from waveflow import Vocoder, cli, pretrained
from waveflow.checkpoint import load_model
from waveflow.errors import CheckpointError, InputError
from waveflow.model import WaveGlow
from waveflow.pretrained import download

NAME = "test-waveglow"
FILENAME = "model.pt"


# -- fixtures and helpers ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict[str, Path]:
    """NVIDIA's two formats as published files (the fixtures, decompressed): layout -> path."""
    if not NVIDIA_FIXTURES.is_dir():
        pytest.skip(f"NVIDIA fixtures not found at {NVIDIA_FIXTURES} (set WAVEFLOW_SHARED)")
    folder = tmp_path_factory.mktemp("published")
    files = {}
    for layout, fixture in (
        ("dle", "waveglow_dle_hub_checkpoint.pt.xz"),
        ("original", "waveglow_orig_checkpoint.pt.xz"),
    ):
        path = folder / fixture.removesuffix(".xz")
        path.write_bytes(lzma.decompress((NVIDIA_FIXTURES / fixture).read_bytes()))
        files[layout] = path
    return files


@pytest.fixture
def dle_bytes(published) -> bytes:
    return published["dle"].read_bytes()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("WAVEFLOW_CACHE", str(folder))
    monkeypatch.setattr(download, "RETRY_DELAY_S", 0.0)
    return folder


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def register(monkeypatch, url: str, *, sha: str | None = None, size: int | None = None):
    entry = pretrained.DownloadableModel(
        name=NAME,
        url=url,
        filename=FILENAME,
        sha256=sha,
        size=size,
        description="a test entry",
        licence="test",
        source="tests/test_download.py",
        page="https://example.invalid/by-hand",
        verification="test",
    )
    monkeypatch.setitem(pretrained.DOWNLOADS, NAME, entry)
    return entry


def files_in(folder: Path) -> list[str]:
    return (
        sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        if folder.exists()
        else []
    )


def damaged(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :]


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """Serves ``files`` ({path: bytes}) on 127.0.0.1 and records every request's path and Range header.

    ``drop_after``: the first ``drops`` responses close the connection after that many body bytes.
    ``ranges``: honour ``Range: bytes=N-`` (206) or ignore it (200 and the whole file).
    ``sent``: body bytes written in all.
    """

    def __init__(
        self, files, *, drop_after=None, drops=0, ranges=True, content_type="application/octet-stream"
    ):
        self.files, self.drop_after, self.drops = files, drop_after, drops
        self.ranges, self.content_type = ranges, content_type
        self.requests: list[tuple[str, str | None]] = []
        self.sent = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner._serve(self)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def _serve(self, handler) -> None:
        body, asked = self.files.get(handler.path), handler.headers.get("Range")
        self.requests.append((handler.path, asked))
        if body is None:
            handler.send_error(404)
            return
        start = 0
        if asked and self.ranges:
            start = int(re.fullmatch(r"bytes=(\d+)-", asked).group(1))
            if start >= len(body):
                handler.send_response(416)
                handler.send_header("Content-Range", f"bytes */{len(body)}")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            handler.send_response(200)
        payload = body[start:]
        handler.send_header("Content-Type", self.content_type)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if self.drops > 0 and self.drop_after is not None:
            self.drops -= 1
            payload = payload[: self.drop_after]
            handler.close_connection = True
        try:
            handler.wfile.write(payload)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. on a wrong size)
            return
        self.sent += len(payload)
        if handler.close_connection:
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Server:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def synthesize(vocoder: Vocoder, mel: torch.Tensor) -> torch.Tensor:
    audio, _ = vocoder(mel, generator=torch.Generator().manual_seed(0))
    return audio


# -- the whole path --------------------------------------------------------------------------------
def test_from_pretrained_fetches_once_checks_converts_and_equals_the_published_file(
    published, dle_bytes, cache, monkeypatch
):
    with Server({"/wg.pt": dle_bytes}) as server:
        register(monkeypatch, server.url("/wg.pt"), sha=sha256(dle_bytes), size=len(dle_bytes))
        vocoder = Vocoder.from_pretrained(NAME)
        assert server.requests == [("/wg.pt", None)]
        again = Vocoder.from_pretrained(NAME)  # from the cache: the server is not asked again
        assert len(server.requests) == 1
    folder = cache / NAME
    assert files_in(folder) == sorted([download.CONVERTED, download.MANIFEST, FILENAME])
    assert (folder / FILENAME).read_bytes() == dle_bytes
    manifest = json.loads((folder / download.MANIFEST).read_text())
    assert manifest["source_sha256"] == sha256(dle_bytes) and manifest["source_format"] == "nvidia-dle"
    assert manifest["converted_sha256"] == pretrained.sha256_of(folder / download.CONVERTED)

    direct = Vocoder.from_checkpoint(published["dle"])
    mel = direct.mel(speech_like(16 * 256), direct.sample_rate)
    expected = synthesize(direct, mel)
    assert expected.abs().max() > 0
    assert torch.equal(synthesize(vocoder, mel), expected)
    assert torch.equal(synthesize(again, mel), expected)


def test_original_format_over_a_file_url_and_the_name_on_the_command_line(
    published, cache, monkeypatch, capsys
):
    source = published["original"]
    register(monkeypatch, source.as_uri(), sha=pretrained.sha256_of(source), size=source.stat().st_size)
    assert cli.main(["download", NAME]) == 0
    converted = Path(capsys.readouterr().out.strip())
    assert converted == cache / NAME / download.CONVERTED
    ours, config = load_model(converted)
    theirs, _ = load_model(source)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert all(torch.equal(v, theirs.state_dict()[k]) for k, v in ours.state_dict().items())
    assert config.mel.sample_rate == 22050

    # Commands that take a checkpoint take the name, and read the cached file.
    assert cli.main(["inspect", NAME]) == 0
    out = capsys.readouterr().out
    assert str(converted) in out and f"source_url: {source.as_uri()}" in out and "nvidia-original" in out


# -- resuming --------------------------------------------------------------------------------------
def test_a_broken_download_resumes_where_it_stopped(dle_bytes, cache, monkeypatch):
    cut = len(dle_bytes) // 3
    with Server({"/wg.pt": dle_bytes}, drop_after=cut, drops=1) as server:
        register(monkeypatch, server.url("/wg.pt"), sha=sha256(dle_bytes), size=len(dle_bytes))
        assert pretrained.resolve(NAME) == cache / NAME / download.CONVERTED
    assert server.requests == [("/wg.pt", None), ("/wg.pt", f"bytes={cut}-")]
    assert server.sent == len(dle_bytes)  # no byte sent twice
    assert (cache / NAME / FILENAME).read_bytes() == dle_bytes


@pytest.mark.parametrize("ranges", [True, False], ids=["server-resumes", "server-ignores-range"])
def test_a_part_file_left_by_an_earlier_run_is_resumed_or_restarted(dle_bytes, cache, monkeypatch, ranges):
    (cache / NAME).mkdir(parents=True)
    (cache / NAME / f"{FILENAME}.part").write_bytes(dle_bytes[:1000])
    with Server({"/wg.pt": dle_bytes}, ranges=ranges) as server:
        register(monkeypatch, server.url("/wg.pt"), sha=sha256(dle_bytes), size=len(dle_bytes))
        pretrained.resolve(NAME)
    assert server.requests == [("/wg.pt", "bytes=1000-")]
    assert server.sent == (len(dle_bytes) - 1000 if ranges else len(dle_bytes))
    assert (cache / NAME / FILENAME).read_bytes() == dle_bytes
    assert files_in(cache / NAME) == sorted([download.CONVERTED, download.MANIFEST, FILENAME])


def test_a_part_file_is_never_taken_for_the_model(dle_bytes, cache, monkeypatch):
    # Every byte is there, but only as .part and nothing says it is whole: the server is asked
    # (here: offline), and nothing is loaded or converted.
    register(monkeypatch, f"http://127.0.0.1:{unused_port()}/wg.pt")
    (cache / NAME).mkdir(parents=True)
    (cache / NAME / f"{FILENAME}.part").write_bytes(dle_bytes)
    with pytest.raises(download.DownloadError):
        pretrained.resolve(NAME)
    assert files_in(cache / NAME) == [f"{FILENAME}.part"]

    # A server that keeps breaking off: the call fails, only the .part file is left ...
    (cache / NAME / f"{FILENAME}.part").unlink()
    chunk = len(dle_bytes) // 8
    with Server({"/wg.pt": dle_bytes}, drop_after=chunk, drops=download.RETRIES + 1) as server:
        register(monkeypatch, server.url("/wg.pt"), sha=sha256(dle_bytes), size=len(dle_bytes))
        with pytest.raises(
            download.DownloadError, match=r"broke off 4 times.*run the command again to resume"
        ):
            pretrained.resolve(NAME)
        assert files_in(cache / NAME) == [f"{FILENAME}.part"]
        held = (cache / NAME / f"{FILENAME}.part").stat().st_size
        assert held == (download.RETRIES + 1) * chunk

        # ... and the next call resumes it; the digest is taken while it is still .part.
        hashed = []
        original_sha256_of = download.sha256_of

        def spy(path):
            hashed.append((path.name, (cache / NAME / FILENAME).exists()))
            return original_sha256_of(path)

        monkeypatch.setattr(download, "sha256_of", spy)
        pretrained.resolve(NAME)
        assert server.requests[-1] == ("/wg.pt", f"bytes={held}-")
    assert hashed[0] == (f"{FILENAME}.part", False)
    assert (cache / NAME / FILENAME).read_bytes() == dle_bytes


# -- refusals --------------------------------------------------------------------------------------
@pytest.mark.parametrize("wrong", ["sha256", "size"])
def test_a_file_that_is_not_the_registered_one_is_refused_and_nothing_is_kept(
    dle_bytes, cache, monkeypatch, capsys, wrong
):
    with Server({"/wg.pt": dle_bytes}) as server:
        if wrong == "sha256":
            register(monkeypatch, server.url("/wg.pt"), sha=sha256(b"another file"), size=len(dle_bytes))
            message = rf"has sha256 {sha256(dle_bytes)}, but {NAME} has {sha256(b'another file')}; removed it"
        else:
            register(monkeypatch, server.url("/wg.pt"), size=len(dle_bytes) + 1)
            message = rf"offers {len(dle_bytes):,} bytes, but {NAME} has {len(dle_bytes) + 1:,}"
        with pytest.raises(download.DownloadIntegrityError, match=message) as refused:
            pretrained.resolve(NAME)
        assert isinstance(refused.value, CheckpointError) and "\n" not in str(refused.value)
        assert files_in(cache) == []

        assert cli.main(["download", NAME]) == 3
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("waveflow download: error: ")
        assert files_in(cache) == []


def test_offline_names_the_url_and_the_ways_around_it(cache, monkeypatch, capsys):
    url = f"http://127.0.0.1:{unused_port()}/wg.pt"
    register(monkeypatch, url)
    with pytest.raises(download.DownloadError) as offline:
        Vocoder.from_pretrained(NAME)
    message = str(offline.value)
    assert isinstance(offline.value, InputError) and "\n" not in message
    assert url in message and "WAVEFLOW_CACHE" in message
    assert str(cache / NAME / FILENAME) in message and "https://example.invalid/by-hand" in message
    assert files_in(cache) == []

    for command in (["download", NAME], ["inspect", NAME]):
        assert cli.main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"error: cannot download {NAME} from {url}" in err[0]


def test_a_web_page_in_place_of_the_file_is_refused(cache, monkeypatch):
    page = b"<html><body>Google Drive - quota exceeded</body></html>"
    with Server({"/wg.pt": page}, content_type="text/html; charset=utf-8") as server:
        register(monkeypatch, server.url("/wg.pt"))
        with pytest.raises(download.DownloadError, match="answered with a web page"):
            pretrained.resolve(NAME)
    assert files_in(cache) == []


def test_an_unverifiable_file_that_is_no_checkpoint_is_not_kept(cache, monkeypatch, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint" * 100)
    register(monkeypatch, junk.as_uri())  # no digest, no size: only the reader can tell
    with pytest.raises(download.DownloadIntegrityError, match="removed it"):
        pretrained.resolve(NAME)
    assert files_in(cache) == []


# -- the cache -------------------------------------------------------------------------------------
def test_a_file_put_in_the_cache_by_hand_is_checked_and_used_offline(dle_bytes, cache, monkeypatch):
    register(monkeypatch, f"http://127.0.0.1:{unused_port()}/wg.pt", sha=sha256(dle_bytes))
    (cache / NAME).mkdir(parents=True)
    (cache / NAME / FILENAME).write_bytes(damaged(dle_bytes))  # damaged
    with pytest.raises(download.DownloadIntegrityError, match="in the cache"):
        pretrained.resolve(NAME)
    assert files_in(cache) == []
    (cache / NAME).mkdir(parents=True)
    (cache / NAME / FILENAME).write_bytes(dle_bytes)
    assert pretrained.resolve(NAME) == cache / NAME / download.CONVERTED


def test_a_damaged_converted_file_is_rebuilt_without_the_network(dle_bytes, cache, monkeypatch):
    with Server({"/wg.pt": dle_bytes}) as server:
        register(monkeypatch, server.url("/wg.pt"))  # nothing published: the first digest is recorded
        converted = pretrained.resolve(NAME)
        good = converted.read_bytes()
        converted.write_bytes(damaged(good))
        assert pretrained.resolve(NAME) == converted
        assert len(server.requests) == 1
    assert converted.read_bytes() == good

    # The recorded digest of the source now guards it too.
    (converted.parent / FILENAME).write_bytes(damaged(dle_bytes))
    converted.unlink()
    with pytest.raises(download.DownloadIntegrityError, match=sha256(dle_bytes)):
        pretrained.resolve(NAME)


def test_two_callers_asking_at_once_download_once(dle_bytes, cache, monkeypatch):
    with Server({"/wg.pt": dle_bytes}) as server:
        register(monkeypatch, server.url("/wg.pt"), sha=sha256(dle_bytes), size=len(dle_bytes))
        results, errors = [], []

        def fetch():
            try:
                results.append(pretrained.resolve(NAME))
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=fetch) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == [] and results == [cache / NAME / download.CONVERTED] * 2
    assert server.requests == [("/wg.pt", None)] and server.sent == len(dle_bytes)


# -- the command, the registry, torch.hub ----------------------------------------------------------
def test_download_command_lists_the_nvidia_models_and_honours_quiet(published, monkeypatch, capsys):
    assert cli.main(["download"]) == 0
    listing = capsys.readouterr().out
    for model in pretrained.DOWNLOADS.values():
        assert f"{model.name}: " in listing and model.url in listing
    assert "cache: not downloaded" in listing

    register(monkeypatch, published["dle"].as_uri())
    bars = []
    original_progress = download._progress

    def recording(bar, total, start, name, disable):
        bars.append(disable)
        return original_progress(bar, total, start, name, disable)

    monkeypatch.setattr(download, "_progress", recording)
    assert cli.main(["-q", "download", NAME]) == 0
    assert cli.main(["download", "--force", NAME]) == 0
    assert bars == [True, None]  # -q: no bar; otherwise tqdm decides (a bar on a terminal)
    assert cli.main(["download", "nope"]) == 2
    assert cli.main(["download", "default"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == str(pretrained.resolve("default"))


def test_registry_keeps_the_shipped_models_and_records_nvidia_sources():
    assert isinstance(pretrained.get("default"), pretrained.PretrainedModel)
    assert pretrained.resolve("default") == pretrained.REGISTRY["compact-speech-v2"].path
    assert set(pretrained.DOWNLOADS) <= set(pretrained.names())
    assert all(pretrained.is_registered(name) for name in pretrained.DOWNLOADS)
    for model in pretrained.DOWNLOADS.values():
        assert model.url.startswith("https://") and "/" not in model.filename
        assert model.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", model.sha256)
        assert model.size is None or model.size > 0
        if model.sha256 is None:
            assert "no sha256" in model.verification
    universal = pretrained.get("nvidia-waveglow-universal-v5")
    assert universal.filename == "waveglow_256channels_universal_v5.pt"
    assert "1rpK8CzAAirq9sWZhe9nlfvxMF1dRgFbF" in universal.url
    hub = pretrained.get("nvidia-waveglow-dle-fp32")
    assert hub.url.endswith("/waveglow_ckpt_fp32/versions/19.09.0/files/nvidia_waveglowpyt_fp32_20190427")


def test_torch_hub_loads_from_a_checkout(published, monkeypatch):
    shipped = torch.hub.load(str(REPO), "default", source="local")
    assert isinstance(shipped, Vocoder)
    reference = Vocoder.from_pretrained()
    mel = reference.mel(speech_like(16 * reference.hop_length), reference.sample_rate)
    assert torch.equal(synthesize(shipped, mel), synthesize(reference, mel))

    register(monkeypatch, published["dle"].as_uri())
    vocoder = torch.hub.load(str(REPO), "waveglow", source="local", name=NAME)
    network = torch.hub.load(str(REPO), "waveglow", source="local", name=NAME, model_only=True)
    assert isinstance(vocoder, Vocoder) and vocoder.n_group == 8
    assert isinstance(network, WaveGlow) and network.config.wavenet.n_channels == 32
