"""`attestd hashes …` against a real database: imported lists decide checks, and a bad
file imports nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner import DecodeLimits, hash_image_bytes, sha256_hex
from tests.conftest import run_cli
from tests.images import jpeg, reencoded


def test_import_check_export_remove(cli_env: dict[str, str], tmp_path: Path) -> None:
    listed, exact = jpeg(31), jpeg(32)
    frame = hash_image_bytes(listed, DecodeLimits()).first
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(f"pdq,phash,sha256\n{frame.pdq},{frame.phash},\n,,{sha256_hex(exact)}\n")
    code, out = run_cli(cli_env, "hashes", "import", str(csv_file), "--label", "csam_suspect",
                    "--source", "partner")
    assert code == 0 and "imported 2 hashes into list:partner" in out
    assert "partner  csam_suspect  2" in run_cli(cli_env, "hashes", "list-sources")[1]
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(reencoded(listed))
    same = tmp_path / "exact.jpg"
    same.write_bytes(exact)
    code, out = run_cli(cli_env, "check", "--json", str(copy), str(same))
    assert code == 1 and out.count('"source": "list:partner"') == 2, out
    exported = tmp_path / "out.csv"
    code, out = run_cli(cli_env, "hashes", "export", "--source", "partner", "-o", str(exported))
    assert code == 0 and "exported 2" in out
    assert exported.read_text().splitlines()[0] == "pdq,pdq_quality,phash,sha256,label,source,md5"
    code, out = run_cli(cli_env, "hashes", "remove", "--source", "partner")
    assert code == 0 and "removed 2" in out
    code, out = run_cli(cli_env, "check", "--json", str(copy), str(same))
    assert "list:partner" not in out
    # What was exported imports again.
    code, out = run_cli(cli_env, "hashes", "import", str(exported), "--label", "nsfw", "--source", "again")
    assert code == 0 and "imported 2" in out


@pytest.mark.parametrize("content", [
    b"", b"\xff\xfe\x00garbage", b"pdq\nnot-a-hash\n", b"url https://x.example\n",
    b"pdq " + b"f" * 64 + b"\npdq broken\n",
])
def test_a_bad_file_imports_nothing(cli_env: dict[str, str], tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    code, out = run_cli(cli_env, "hashes", "import", str(bad), "--label", "nsfw", "--source", "bad")
    assert code != 0 and "nothing was imported" in out or "not UTF-8" in out, out
    assert "Traceback" not in out
    assert "no hash lists imported" in run_cli(cli_env, "hashes", "list-sources")[1]


def test_bad_names_and_labels(cli_env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "l.csv"
    f.write_text("pdq\n" + "f" * 64 + "\n")
    assert run_cli(cli_env, "hashes", "import", str(f), "--label", "nsfw", "--source", "../x")[0] == 2
    assert run_cli(cli_env, "hashes", "import", str(f), "--label", "ok", "--source", "x")[0] == 2
    assert run_cli(cli_env, "hashes", "remove", "--source", "missing")[0] == 1


def test_a_list_imported_after_the_classifiers_ok_rejects_the_image(
        cli_env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    # Issue 16 item 4: the classifier judged the image ok first; then a list names it.
    import asyncio

    from attestd.db.engine import create_engine
    from attestd.db.store import Store

    image = jpeg(33)
    hashes = hash_image_bytes(image, DecodeLimits())

    async def classified_ok() -> None:
        engine = create_engine(db_url)
        try:
            await Store(engine).record_verdict(hashes, "ok", "classifier", "classifier:t", "m")
        finally:
            await engine.dispose()

    asyncio.run(classified_ok())
    path = tmp_path / "image.jpg"
    path.write_bytes(image)
    code, out = run_cli(cli_env, "check", "--json", str(path))
    assert code == 0 and '"source": "verdict:' in out, out
    listed = tmp_path / "list.csv"
    listed.write_text(f"sha256\n{hashes.sha256}\n")
    assert run_cli(cli_env, "hashes", "import", str(listed), "--label", "csam_suspect",
                   "--source", "partner")[0] == 0
    code, out = run_cli(cli_env, "check", "--json", str(path))
    assert code == 1 and '"source": "list:partner"' in out, out


def test_reimport_replaces_the_list_and_says_what_changed(cli_env: dict[str, str],
                                                         tmp_path: Path) -> None:
    a, b, c = jpeg(41), jpeg(42), jpeg(43)
    hashes = {k: hash_image_bytes(v, DecodeLimits()).first for k, v in (("a", a), ("b", b))}
    first = tmp_path / "v1.csv"
    first.write_text("pdq,phash,sha256,label\n"
                     f"{hashes['a'].pdq},{hashes['a'].phash},,csam_suspect\n"
                     f"{hashes['b'].pdq},{hashes['b'].phash},,csam_suspect\n")
    # No --label: the file's own label column says what a match means.
    code, out = run_cli(cli_env, "hashes", "import", str(first), "--source", "feed")
    assert code == 0 and "2 added, 0 kept, 0 dropped" in out, out
    second = tmp_path / "v2.csv"
    second.write_text("pdq,phash,sha256,label\n"
                      f"{hashes['a'].pdq},{hashes['a'].phash},,csam_suspect\n"
                      f"{hashes['a'].pdq},{hashes['a'].phash},,csam_suspect\n"
                      f",,{sha256_hex(c)},csam_suspect\n")
    code, out = run_cli(cli_env, "hashes", "import", str(second), "--source", "feed")
    assert code == 0 and "1 added, 1 kept, 1 dropped" in out, out
    assert "feed  csam_suspect  2" in run_cli(cli_env, "hashes", "list-sources")[1]
    files = {}
    for name, data in (("a", reencoded(a)), ("b", b), ("c", c)):
        files[name] = tmp_path / f"{name}.jpg"
        files[name].write_bytes(data)
    code, out = run_cli(cli_env, "check", "--json", *(str(p) for p in files.values()))
    lines = out.strip().splitlines()
    assert [('"source": "list:feed"' in line) for line in lines] == [True, False, True], out
    # The same file again changes nothing.
    code, out = run_cli(cli_env, "hashes", "import", str(second), "--source", "feed")
    assert code == 0 and "0 added, 2 kept, 0 dropped" in out, out


def test_rows_without_a_label_need_label(cli_env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "l.csv"
    f.write_text("pdq,label\n" + "f" * 64 + ",csam_suspect\n" + "0" * 64 + ",\n")
    code, out = run_cli(cli_env, "hashes", "import", str(f), "--source", "x")
    assert code != 0 and "1 of 2 rows have no label" in out and "nothing was imported" in out
