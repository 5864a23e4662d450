# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python (repro-mtkd)
#     language: python
#     name: repro-mtkd
# ---

# %% [markdown]
# # 00 · Data: ODIR-5K labels, splits and captions
#
# The paper (§4.1, Tables 1–2, Fig. 3) trains on a private set of fundus photographs with three
# targets per image: a coarse disease class (T1), a fine-grained diagnosis (T2) and a short
# diagnostic text (T3). This study uses the public ODIR-5K photographs instead, and derives the
# three targets from each eye's diagnostic keywords (docs/design.md §2, `repro.data.labels`):
#
# - **T1** `paper5`: normal, dr, amd, glaucoma, other ("other" stands in for the paper's melanoma);
#   an eye with several categories takes the first of dr > amd > glaucoma > other > normal;
# - **T2**: the eye's decisive keywords, canonicalised, sorted and joined; classes with fewer than
#   `t2_min_count` images in the training pool fold into `other:<T1 class>`;
# - **T3**: the keyword text itself, tokenised with nltk; vocabulary from the training pool.
#
# The split is by patient (both eyes together), stratified, 15 % test / 15 % validation / 70 %
# training pool, with nested labeled fractions L15 ⊂ L30 ⊂ L45 ⊂ L60 ⊂ L70 (% of all patients).
# It is saved once to `results/splits/` and every run reuses it; its hash goes into every result.
#
# This notebook prepares the data for one profile (labels, split file, image cache) and reports it.

# %% tags=["parameters"]
import os

profile = os.environ.get("REPRO_PROFILE", "quick")  # the test suite runs every notebook under "smoke"
data_root = None
example_seed = 0  # picks the example images; the split seed is the profile's split_seed
results_dir = None
skip_bad_images = False  # skip unreadable images (listed in the data report); the rest get a split of their own
strict_keywords = False  # fail on keywords the keyword table lacks instead of deciding them by rule

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from repro.names import EOS, P_VALUES
from repro.data.prepare import caption_lengths, data_summary, ngrams_by_class, prepare_data
from repro.paths import layout_for_results, results_dir as default_results_dir
from repro.io import write_json
from repro.data.splits import reference_name, split_hash
from repro.errors import DataError
from repro.experiments.context import make_context

prepared = prepare_data(data_root=data_root, profile=profile, skip_bad_images=skip_bad_images,
                        strict_keywords=strict_keywords, layout=layout_for_results(results_dir) if results_dir else None)
summary = data_summary(prepared)
m = prepared.manifest
print(f"data: {prepared.data_root} ({prepared.layout} layout), profile {prepared.profile}, "
      f"{prepared.image_size} px, taxonomy {prepared.taxonomy}")
print(f"images kept {summary['images_kept']}, excluded {summary['images_excluded']}, "
      f"bad {len(summary['bad_images'])}, patients {summary['patients']}")
print(f"split file {summary['split_file']} (sha256 {summary['split_hash']})")

# %% [markdown]
# ## Checks
# These hold for every profile and data set; the cell's output is compared by `nbval`, so it
# must read the same on every run. (The split seed is fixed by the profile, `split_seed`; the
# `example_seed` parameter only picks the example images below.)

# %%
# NBVAL_CHECK_OUTPUT
pool = m[m["split"] == "train"]
n_patients = m["patient_id"].nunique()
labeled = {q: set(m.iloc[prepared.indices("train", p=q)]["patient_id"]) for q in P_VALUES}
again = prepare_data(data_root=data_root, profile=profile, with_images=False, skip_bad_images=skip_bad_images,
                     strict_keywords=strict_keywords, layout=layout_for_results(results_dir) if results_dir else None)
fine_pool = pool["fine_class"].value_counts()
checks = {
    "no patient in two splits": bool(m.groupby("patient_id")["split"].nunique().max() == 1),
    "labeled fractions nested": all(labeled[a] <= labeled[b] for a, b in zip(P_VALUES, P_VALUES[1:])),
    "L70 is the training pool": labeled[max(P_VALUES)] == set(pool["patient_id"]),
    "L_p sizes are round(p/100 * patients)": all(
        len(labeled[q]) == round(q / 100 * n_patients) for q in P_VALUES if q != max(P_VALUES)),
    "split file reused unchanged": again.split_hash == prepared.split_hash == split_hash(prepared.split_file),
    "every image kept, excluded or listed as bad": (
        prepared.max_patients is not None
        or len(m) + len(prepared.excluded) + len(prepared.bad_images) == prepared.info["csv_rows"]),
    "T2 classes below min_count folded": bool(
        (fine_pool[~fine_pool.index.str.startswith("other:")] >= prepared.t2_min_count).all()),
    "captions: max_len + 1 ids, one EOS each": bool(
        prepared.captions.shape[1] == prepared.max_caption_len + 1 and ((prepared.captions == EOS).sum(1) == 1).all()),
    "image cache in manifest order": prepared.images is None or len(prepared.images) == len(m),
}
for name, ok in checks.items():
    print(f"{name}: {ok}")
assert all(checks.values()), [name for name, ok in checks.items() if not ok]

# %% [markdown]
# On the shared ODIR-5K subset (5,503 images, split seed 0) the counts are known; a change in
# the labelling or split code that moves them fails here.

# %%
known = {
    "smoke": {"images_kept": 456, "patients": 240, "train": 320, "val": 65, "test": 71,
              "fine_classes": 18, "vocab_size": 45},
    "quick": {"images_kept": 5503, "patients": 2878, "train": 3849, "val": 833, "test": 821,
              "fine_classes": 29, "vocab_size": 58},
    "paper": {"images_kept": 5503, "patients": 2878, "train": 3849, "val": 833, "test": 821,
              "fine_classes": 29, "vocab_size": 58},
}
reference = known.get(prepared.profile) if (
    reference_name(prepared.data_identity) and prepared.split_seed == 0   # the reference images and labels, by content
) else None
measured = {"images_kept": summary["images_kept"], "patients": summary["patients"],
            **{s: summary["splits"][s]["images"] for s in ("train", "val", "test")},
            "fine_classes": summary["fine_classes"], "vocab_size": summary["vocab_size"]}
if reference is None:
    print(f"data {prepared.data_identity} is not the reference subset (or another profile / split seed): "
          "no reference counts to compare; its counts:")
    print(pd.Series(measured, name="count").to_string())
else:
    moved = {k: (measured[k], reference[k]) for k in reference if measured[k] != reference[k]}
    if moved:
        raise DataError(f"the reference data gives other counts than known for {prepared.profile} "
                           f"(measured, known): {moved}; the labelling or split code changed")
    print("counts match the reference for", prepared.profile)

# %% [markdown]
# ## Images and patients per split and labeled fraction

# %%
sizes = pd.DataFrame({**{s: v for s, v in summary["splits"].items()},
                      **{f"L{q}": v for q, v in summary["per_p"].items()}}).T
sizes["images / patient"] = (sizes["images"] / sizes["patients"]).round(2)
sizes

# %% [markdown]
# ## T1 class counts per split and per labeled fraction (cf. paper Table 1)

# %%
counts = pd.DataFrame(summary["coarse_counts"]).T
counts_p = pd.DataFrame(summary["coarse_counts_per_p"]).T.rename(index=lambda q: f"L{q}")
table = pd.concat([counts, counts_p])[list(prepared.coarse_classes)]
table["total"] = table.sum(axis=1)
table

# %%
long = table.drop(columns="total").reset_index(names="subset").melt(
    id_vars="subset", var_name="T1 class", value_name="images")
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
sns.barplot(data=long[long["subset"].isin(["train", "val", "test"])], x="T1 class", y="images",
            hue="subset", ax=axes[0])
axes[0].set_title("T1 classes per split")
sns.barplot(data=long[long["subset"].str.startswith("L")], x="T1 class", y="images", hue="subset",
            ax=axes[1], palette="Blues")
axes[1].set_title("T1 classes per labeled fraction L_p")
fig.tight_layout()

# %% [markdown]
# ## Excluded and bad images
# Images whose keywords are "anterior segment image" or "no fundus image", or that carry only
# quality keywords, are not fundus photographs one can label; bad (missing or unreadable) images
# are skipped only with `skip_bad_images=True` and listed here.

# %%
excluded = pd.Series(summary["excluded_by_reason"], name="images", dtype=int)
print(f"excluded: {summary['images_excluded']} image(s); bad: {len(summary['bad_images'])} image(s)")
pd.concat([excluded.rename_axis("reason").reset_index(),
           pd.DataFrame({"reason": ["bad image (skipped)"], "images": [len(summary["bad_images"])]})],
          ignore_index=True)

# %% [markdown]
# ## T2: fine-grained classes in the training pool
# Classes with fewer than `t2_min_count` pool images are folded into `other:<T1 class>`.

# %%
print(f"{summary['fine_classes']} T2 classes (min count {summary['t2_min_count']}); "
      f"{summary['fine_classes_raw_in_pool']} distinct keyword sets in the pool before folding")
fine_table = pool.groupby(["coarse", "fine_class"]).size().rename("pool images").reset_index()
fine_table.sort_values(["coarse", "pool images"], ascending=[True, False]).reset_index(drop=True)

# %% [markdown]
# ## T3: caption lengths (cf. paper Fig. 3)

# %%
lengths = caption_lengths(prepared)
print(f"mean caption length {lengths.mean():.2f} tokens, max {lengths.max()}, "
      f"{summary['captions_truncated']} caption(s) longer than {prepared.max_caption_len}; "
      f"vocabulary {summary['vocab_size']} tokens (min count {summary['vocab_min_count']})")
fig, ax = plt.subplots(figsize=(7, 3.5))
sns.histplot(x=lengths, hue=m["coarse"], multiple="stack", discrete=True, ax=ax,
             hue_order=list(prepared.coarse_classes))
ax.set_xlabel("caption length (tokens, incl. ',' between keywords)")
ax.set_ylabel("images")
ax.set_title("Caption lengths per T1 class")
fig.tight_layout()

# %% [markdown]
# ## Most frequent n-grams per T1 class (cf. paper Table 2)
# n-grams stay within one keyword; `images` counts the captions that contain the n-gram.

# %%
grams = pd.concat([ngrams_by_class(prepared, n, top=5).assign(n=n) for n in (1, 2, 3)])
grams.pivot_table(index=["coarse", "rank"], columns="n", values="ngram", aggfunc="first",
                  sort=False).rename(columns={1: "unigram", 2: "bigram", 3: "trigram"})

# %% [markdown]
# ## Example images per T1 class
# A few images of each class (chosen with `example_seed`), with their captions.

# %%
if prepared.images is None:
    print("no image cache (with_images=False)")
else:
    per_class = 4
    examples = m.sample(frac=1, random_state=example_seed).groupby("coarse", sort=False).head(per_class)
    classes = list(prepared.coarse_classes)
    fig, axes = plt.subplots(len(classes), per_class, figsize=(2.3 * per_class, 2.5 * len(classes)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, cls in enumerate(classes):
        rows = examples[examples["coarse"] == cls]
        for c, (i, row) in enumerate(rows.iterrows()):
            axes[r, c].imshow(prepared.images[i])
            axes[r, c].set_title(f"{cls}\n{row['caption'][:32]}", fontsize=7)
    fig.tight_layout()

# %% [markdown]
# ## Model inputs: the frozen encoder's features, computed once
# Profiles that keep part of the encoder frozen (`quick`, `finetune`) feed the models the frozen trunk's
# outputs, computed once per image and view and cached (`repro.models.featcache`; the `quick` profile runs
# the trunk with its BatchNorm folded into the convolutions, on every core). Building them here, before any
# model trains, means every later notebook, and every chain of a sweep, finds them ready. The build time
# goes into `00_data.json` under `feature_cache.build_s`, also when the cache was built by an earlier run.

# %%
ctx = make_context(profile, p=min(P_VALUES), seed=example_seed, data_root=data_root, results_dir=results_dir,
                   skip_bad_images=skip_bad_images, strict_keywords=strict_keywords)
feature_cache = ctx.bank().cache_record
summary["feature_cache"] = feature_cache
if feature_cache is None:
    print(f"profile {profile} trains the whole encoder: there is no feature cache")
else:
    print(f"feature cache {feature_cache['folder']}: {feature_cache['views']}, built in "
          f"{feature_cache['build_s']:.0f} s on {feature_cache['threads']} thread(s), "
          f"precision {feature_cache['precision']}, BatchNorm folded: {feature_cache['batchnorm_folded']}")

# %% [markdown]
# ## Data summary for the report
# Written to `<results_dir>/00_data.json` (default `out/<profile>/00_data.json`).

# %%
out_dir = Path(results_dir) if results_dir else default_results_dir(prepared.profile)
path = write_json(out_dir / "00_data.json", summary)
print("wrote", path.name)
