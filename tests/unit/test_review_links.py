"""Links from review items to Lemmy: built from ``review.lemmy_url`` and a pict-rs alias."""

from __future__ import annotations

from pathlib import Path

import pytest

from attestd.config import load_config
from attestd.errors import ConfigError
from attestd.review import lemmy_image_url


def test_a_lemmy_link_is_the_image_under_lemmys_pictrs_proxy_with_the_alias_quoted() -> None:
    assert lemmy_image_url("https://lemmy.example/", "0b1c.jpg") == \
        "https://lemmy.example/pictrs/image/0b1c.jpg"
    # An alias is pict-rs's text: it stays one path segment whatever it holds.
    assert lemmy_image_url("https://lemmy.example", "a/../b?c#d") == \
        "https://lemmy.example/pictrs/image/a%2F..%2Fb%3Fc%23d"


@pytest.mark.parametrize("value,ok", [("", True), ("https://lemmy.example/", True),
                                      ("javascript:alert(1)", False), ("lemmy.example", False)])
def test_review_lemmy_url_is_empty_or_an_http_url(tmp_path: Path, value: str, ok: bool) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[review]\nlemmy_url = "{value}"\n')
    if ok:
        assert load_config(path, {}).review.lemmy_url == value.rstrip("/")
    else:
        with pytest.raises(ConfigError, match="review.lemmy_url"):
            load_config(path, {})
