"""Profiles are hashable values: a modified profile's own settings prepare its data (never the base
profile's, looked up by name), and ``to_dict`` keeps the ``profile_settings`` form result files record."""

from __future__ import annotations

import json
from dataclasses import fields
from types import SimpleNamespace

import pytest

from repro.errors import ConfigError
from repro.experiments.context import make_context
from repro.profiles import PROFILES, Profile, get_profile

#: the settings data preparation reads (repro.data.prepare.prepare_data)
DATA_SETTINGS = {"image_size": 64, "max_patients": 8, "split": "fixed", "split_seed": 3, "taxonomy": "paper5", "t2_min_count": 2,
                 "vocab_min_count": 1, "max_caption_len": 10}


def test_profiles_hash_and_compare_by_value():
    for prof in PROFILES.values():
        assert hash(prof) == hash(get_profile(prof.name))
    smoke = get_profile("smoke")
    copy = smoke.with_overrides(image_size=64)
    assert copy != smoke and len({smoke, copy, get_profile("smoke")}) == 2
    # extra settings: a mapping is accepted and held as sorted pairs, lists as tuples
    a = smoke.with_overrides(extra={"b": [1, 2], "a": "x"})
    b = smoke.with_overrides(extra=(("a", "x"), ("b", (1, 2))))
    assert a == b and hash(a) == hash(b) and a.extra == (("a", "x"), ("b", (1, 2)))
    with pytest.raises(ConfigError, match=r"extra\['bad'\]"):
        smoke.with_overrides(extra={"bad": {"nested": 1}})


def test_to_dict_keeps_the_recorded_form():
    """``profile_settings`` of a result JSON: every field, sequences as lists, ``extra`` a mapping."""
    for prof in PROFILES.values():
        d = json.loads(json.dumps(prof.to_dict()))
        assert set(d) == {f.name for f in fields(Profile)}
        assert d["extra"] == {} and d["views"] == list(prof.views) and d["taus"] == list(prof.taus)
    d = get_profile("smoke").with_overrides(extra={"k": [1, 2]}).to_dict()
    assert json.loads(json.dumps(d))["extra"] == {"k": [1, 2]}


def test_modified_profile_reaches_data_preparation(monkeypatch, tmp_path):
    """A copy of ``smoke`` with other data settings is prepared with those settings, not cached by name."""
    seen: list[Profile] = []

    def fake_prepare(*, data_root, profile, skip_bad_images, strict_keywords, layout, allow_outside_root=None,
                     split_seed=None):
        seen.append(profile)
        return SimpleNamespace(data_identity=f"fake-{profile.image_size}", split_hash="0" * 16, profile=profile)

    monkeypatch.setattr("repro.data.prepare.prepare_data", fake_prepare)
    results = tmp_path / "R" / "smoke"  # this test's own data root: nothing of it is cached yet
    base = make_context("smoke", data_root=tmp_path, results_dir=results)
    copy = get_profile("smoke").with_overrides(**DATA_SETTINGS)
    mod = make_context(copy, data_root=tmp_path, results_dir=results)
    by_kw = make_context("smoke", data_root=tmp_path, results_dir=results, **DATA_SETTINGS)
    again = make_context("smoke", data_root=tmp_path, results_dir=results)
    assert seen == [get_profile("smoke"), copy]           # prepared once per distinct profile
    assert base.prepared is again.prepared and mod.prepared is by_kw.prepared
    assert mod.prepared.profile == copy and mod.profile == copy
    for key, value in DATA_SETTINGS.items():
        assert getattr(seen[1], key) == value, key


def test_modified_profile_prepares_its_own_data(tiny_odir, tmp_path):
    """On real images: image size, max_patients and split seed of a smoke copy reach the prepared data."""
    results = tmp_path / "R" / "smoke"
    base = make_context("smoke", data_root=tiny_odir, results_dir=results)
    copy = get_profile("smoke").with_overrides(image_size=64, max_patients=8, split="fixed", split_seed=7)
    mod = make_context(copy, data_root=tiny_odir, results_dir=results)
    assert base.prepared.images.shape[1:3] == (96, 96)
    assert mod.prepared.images.shape[1:3] == (64, 64)
    assert (mod.prepared.max_patients, mod.prepared.split_seed) == (8, copy.split_seed)
    assert mod.prepared.manifest["patient_id"].nunique() == 8 < base.prepared.manifest["patient_id"].nunique()
    assert mod.prepared.split_hash != base.prepared.split_hash
