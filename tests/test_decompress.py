from __future__ import annotations

import os
from pathlib import Path

import pytest

from piimg.errors import ImageError
from piimg.image.decompress import Format, decompress_to, detect_format, open_decompressed
from tests.conftest import have
from tests.fetchfixtures import EXT, MIB, compress, raw_image, sha, without_decoder_programs, write

FORMATS = ["raw", "xz", "gz", "zst", "zip"]


@pytest.fixture(params=[pytest.param("external", marks=pytest.mark.integration), "python"])
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    if request.param == "python":
        without_decoder_programs(monkeypatch, tmp_path)
    return str(request.param)


@pytest.fixture(scope="module")
def data() -> bytes:
    return raw_image(3 * MIB)


@pytest.mark.parametrize("fmt", FORMATS)
def test_decompress_every_format(tmp_path: Path, data: bytes, fmt: str, decoder: str) -> None:
    src = write(tmp_path / f"x{EXT[fmt]}", compress(data, fmt))
    out = tmp_path / "out.img"
    result = decompress_to(src, out)
    assert out.read_bytes() == data
    assert result.size == len(data)
    assert result.sha256 == sha(data)


@pytest.mark.parametrize("fmt", ["xz", "gz", "zst", "zip"])
def test_format_detected_by_magic_not_name(tmp_path: Path, data: bytes, fmt: str) -> None:
    src = write(tmp_path / "image.img", compress(data, fmt))  # misleading extension
    assert detect_format(src) is Format(fmt.replace("gz", "gzip").replace("zst", "zstd"))
    out = tmp_path / "out.img"
    decompress_to(src, out)
    assert out.read_bytes() == data


def test_output_is_sparse(tmp_path: Path) -> None:
    # 8 MiB with 1 MiB of data in the middle: the holes must not take disk space
    data = bytearray(8 * MIB)
    data[3 * MIB : 4 * MIB] = os.urandom(MIB)
    src = write(tmp_path / "x.img.xz", compress(bytes(data), "xz"))
    out = tmp_path / "out.img"
    decompress_to(src, out)
    st = out.stat()
    assert st.st_size == 8 * MIB  # trailing hole still counts in the size
    assert st.st_blocks * 512 <= 2 * MIB, f"{st.st_blocks * 512} bytes allocated"
    assert out.read_bytes() == bytes(data)


def test_trailing_data_and_odd_size(tmp_path: Path) -> None:
    data = raw_image(MIB + 12345, trailing_zeros=False)
    src = write(tmp_path / "x.img.gz", compress(data, "gz"))
    decompress_to(src, tmp_path / "o.img")
    assert (tmp_path / "o.img").read_bytes() == data


@pytest.fixture(scope="module")
def multiblock_xz(data: bytes) -> bytes:
    """Made with the xz program, before ``decoder`` may empty PATH (module fixtures come first)."""
    return compress(data, "xz", multiblock=True)


@pytest.mark.skipif(not have("xz"), reason="xz not installed")
def test_multiblock_xz_both_decoders(tmp_path: Path, data: bytes, multiblock_xz: bytes, decoder: str) -> None:
    src = write(tmp_path / "x.img.xz", multiblock_xz)
    assert decompress_to(src, tmp_path / "o.img").sha256 == sha(data)


@pytest.mark.parametrize("fmt", ["xz", "gz", "zst"])
def test_corrupt_input_is_an_image_error(tmp_path: Path, data: bytes, fmt: str, decoder: str) -> None:
    blob = bytearray(compress(data, fmt))
    mid = len(blob) // 2
    blob[mid : mid + 64] = bytes(64)
    blob = blob[: len(blob) * 3 // 4]  # truncated as well
    src = write(tmp_path / f"x{EXT[fmt]}", bytes(blob))
    with pytest.raises(ImageError, match=r"x\.img\."):
        decompress_to(src, tmp_path / "o.img")


def test_zip_with_two_images_is_refused(tmp_path: Path) -> None:
    import zipfile

    src = tmp_path / "two.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("a.img", b"a")
        zf.writestr("b.img", b"b")
    with pytest.raises(ImageError, match=r"exactly one \.img"):
        decompress_to(src, tmp_path / "o.img")


@pytest.mark.parametrize("fmt", FORMATS)
def test_open_decompressed_streams(tmp_path: Path, data: bytes, fmt: str) -> None:
    src = write(tmp_path / f"x{EXT[fmt]}", compress(data, fmt))
    got = bytearray()
    with open_decompressed(src) as stream:
        while chunk := stream.read(100_000):
            assert len(chunk) == 100_000 or len(got) + len(chunk) == len(data)  # full reads until the end
            got += chunk
    assert bytes(got) == data


def test_open_decompressed_close_early_kills_decoder(tmp_path: Path, data: bytes) -> None:
    src = write(tmp_path / "x.img.xz", compress(data, "xz"))
    stream = open_decompressed(src)
    assert stream.read(10) == data[:10]
    stream.close()  # must not hang or raise
    proc = getattr(stream.raw, "proc", None)
    if proc is not None:
        assert proc.poll() is not None


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot read"):
        decompress_to(tmp_path / "nope.img.xz", tmp_path / "o.img")


def test_non_regular_target_gets_every_byte(tmp_path: Path) -> None:
    """A device keeps old data under a skipped block: write zeros there (a FIFO stands in for a device)."""
    import threading

    data = bytearray(2 * MIB)
    data[MIB : MIB + 10] = b"0123456789"
    src = write(tmp_path / "x.img.gz", compress(bytes(data), "gz"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = bytearray()

    def drain() -> None:
        with open(fifo, "rb") as fh:
            while chunk := fh.read(65536):
                got.extend(chunk)

    t = threading.Thread(target=drain)
    t.start()
    result = decompress_to(src, fifo)
    t.join(timeout=10)
    assert bytes(got) == bytes(data) and result.size == len(data)


def test_interrupt_mid_decompression_stops_the_decoder(tmp_path: Path, data: bytes, decoder: str) -> None:
    import contextlib
    import threading

    class Bar:
        def update(self, n: int) -> None:
            raise KeyboardInterrupt

    class Reporter:
        def info(self, m: str) -> None: ...
        def warn(self, m: str) -> None: ...
        def bar(self, d: str, t: int | None, *, unit: str = "B") -> contextlib.AbstractContextManager[Bar]:
            return contextlib.nullcontext(Bar())

    src = write(tmp_path / "x.img.xz", compress(data, "xz"))
    before = threading.active_count()
    with pytest.raises(KeyboardInterrupt):
        decompress_to(src, tmp_path / "o.img", Reporter())  # type: ignore[arg-type]
    assert threading.active_count() == before  # the reader thread is gone


def test_checksum_can_be_skipped(tmp_path: Path, data: bytes) -> None:
    src = write(tmp_path / "x.img.zst", compress(data, "zst"))
    result = decompress_to(src, tmp_path / "o.img", checksum=False)
    assert result.sha256 == "" and result.size == len(data)
    assert (tmp_path / "o.img").read_bytes() == data


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["xz", "zst"])
def test_without_checksum_the_decoder_writes_the_file_sparse(tmp_path: Path, fmt: str) -> None:
    """checksum=False lets xz/zstd write straight into the file; it must still be sparse and exact."""
    if not have({"xz": "xz", "zst": "zstd"}[fmt]):
        pytest.skip("decoder not installed")
    raw = os.urandom(1 << 20) + bytes(32 << 20) + os.urandom(4096) + bytes(8 << 20)
    src = write(tmp_path / f"x.img.{fmt}", compress(raw, fmt))
    out = tmp_path / "o.img"
    result = decompress_to(src, out, checksum=False)
    assert result.size == len(raw) and out.read_bytes() == raw
    assert out.stat().st_blocks * 512 < 8 << 20  # the 40 MiB of zeros are holes


@pytest.mark.integration
def test_without_checksum_corrupt_input_is_an_image_error(tmp_path: Path, data: bytes) -> None:
    if not have("xz"):
        pytest.skip("xz not installed")
    packed = bytearray(compress(data, "xz"))
    packed[len(packed) // 2] ^= 0xFF
    src = write(tmp_path / "x.img.xz", bytes(packed))
    with pytest.raises(ImageError, match="xz cannot decompress it"):
        decompress_to(src, tmp_path / "o.img", checksum=False)
