"""A frames selection: the frames tier holds only the chosen utterances (whole or as fixed crops); pooled stays complete."""

from __future__ import annotations

import pytest

from layerlab.cache import open_cache
from layerlab.data.selection import FramesSelection
from layerlab.extract import ExtractConfig
from layerlab.extract.pipeline import CacheMismatch

pytestmark = pytest.mark.usefixtures("ray_session")


def test_extraction_writes_frames_only_for_the_selection_and_crops_them(wavlm_spec, corpus, tmp_path):
    from layerlab.extract import extract

    root, expected = corpus
    whole, cropped = expected[0], expected[1]
    select = {whole: None, cropped: (0.2, 0.3)}
    out = str(tmp_path / "cache")
    s = extract(wavlm_spec, root, out, ExtractConfig(progress=False, tier="both", frames_select=select))
    assert s.complete
    cache = open_cache(out)
    assert sorted(cache.read_pooled().ids) == sorted(expected)  # the pooled tier stays complete
    rows = {r.id: r for r in cache.iter_frames()}
    assert sorted(rows) == sorted(select)
    full = {r.id: r for r in open_cache(out).iter_frames()}[cropped]
    assert full.frames["hidden_0"].shape[0] == 15  # 0.3 s at 50 Hz
    sel = cache.frames_selection()
    assert isinstance(sel, FramesSelection) and sel.ids == select
    assert cache.metadata.frames_selection["utterances"] == 2 and cache.metadata.frames_selection["cropped"] == 1
    # another selection is another cache: refused instead of mixed
    with pytest.raises(CacheMismatch, match="frames_selection"):
        extract(wavlm_spec, root, out, ExtractConfig(progress=False, tier="both", frames_select={whole: None}))
