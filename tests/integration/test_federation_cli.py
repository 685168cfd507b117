"""The peers, followers and review commands: clear errors on bad input, nothing lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.images import jpeg


@pytest.mark.parametrize("args", [
    ("peers", "add", "not a url", "--trust", "full"),
    ("peers", "add", "@nobody", "--trust", "full"),
    ("peers", "add", "http://127.0.0.1:1/actor", "--trust", "full"),
    ("peers", "add", "http://127.0.0.1:1/actor", "--trust", "bad_only", "--perceptual-ok"),
    ("peers", "add", "http://127.0.0.1:1/actor", "--trust", "total"),
    ("peers", "trust", "http://nobody.example/actor", "full"),
    ("peers", "remove", "http://nobody.example/actor"),
    ("followers", "approve", "http://nobody.example/actor"),
    ("review", "mark", "--sha256", "zz", "--label", "ok"),
    ("review", "mark", "--sha256", "ab" * 32, "--label", "maybe"),
    ("review", "mark", "--label", "ok"),
    ("review", "clear", "--sha256", "ab" * 32),
])
def test_bad_input_is_refused_with_a_reason(cli_env: dict[str, str], args: tuple[str, ...]) -> None:
    code, out = run_cli(cli_env, *args)
    assert code != 0
    assert out.strip(), "the command must say what was wrong"
    assert "Traceback" not in out
    # Nothing was recorded.
    assert "no peers" in run_cli(cli_env, "peers", "list")[1]


def test_review_mark_list_and_clear(cli_env: dict[str, str], tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg(5))
    code, out = run_cli(cli_env, "review", "mark", str(photo), "--label", "csam_suspect")
    assert code == 0 and "human review, 1 frame(s)" in out and "/attestations/" in out
    code, out = run_cli(cli_env, "check", str(photo))
    assert code == 1 and "csam_suspect" in out
    code, out = run_cli(cli_env, "review", "clear", str(photo))
    assert code == 0 and "retracted 1 verdict(s) and 1 attestation(s)" in out
    code, out = run_cli(cli_env, "check", str(photo))
    assert "policy:on_unknown" in out
    assert "the review queue is empty" in run_cli(cli_env, "review", "list")[1]
