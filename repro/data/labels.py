"""Per-eye labels from ODIR-5K diagnostic keywords (docs/design.md §2).

An eye's keyword text (``"laser spot，moderate non proliferative retinopathy"``)
gives three targets, as in the paper's three tasks:

- T1 ``coarse_label``: one class of a taxonomy (``paper5``: normal, dr, amd,
  glaucoma, other; ``odir8``: the eight ODIR categories), chosen from the eye's
  categories by a fixed priority order;
- T2 ``fine_label``: the eye's decisive keywords, canonicalised, sorted, joined;
- T3 ``caption_text``: the keyword text itself, lower-cased, separators normalised.

Keywords map to the ODIR categories N D G C A H M O through an explicit table
(``KEYWORD_TABLE``) that covers every keyword of ``full_df.csv``; an unknown
keyword is an error, never a silent "other".
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from repro.errors import ConfigError, DataError

CATEGORIES = ("N", "D", "G", "C", "A", "H", "M", "O")


QUALITY_KEYWORDS = (
    "lens dust",
    "low image quality",
    "optic disk photographically invisible",
    "image offset",
)


EXCLUDE_KEYWORDS = ("anterior segment image", "no fundus image")


_SEPARATORS = re.compile(r"[，,]")


_SPELLING = (
    # spelling variants that occur in full_df.csv, mapped onto one form
    (re.compile(r"\bnon[\s-]+proliferative\b"), "nonproliferative"),
    (re.compile(r"\boptic disk\b"), "optic disc"),
)


def _normalise(text: str) -> str:
    return " ".join(str(text).strip().lower().split())


def split_keywords(text: str) -> list[str]:
    """Split one eye's keyword text on ``，`` and ``,``; strip, lower-case, collapse whitespace.

    Empty pieces (a trailing separator) are dropped.
    """
    if text is None or (isinstance(text, float) and text != text):
        return []
    return [k for k in (_normalise(p) for p in _SEPARATORS.split(str(text))) if k]


def canonical_keyword(kw: str) -> str:
    """One spelling per keyword: lower case, single spaces, ``non proliferative`` ->
    ``nonproliferative``, ``optic disk`` -> ``optic disc`` (both spellings occur in the data)."""
    out = _normalise(kw)
    for pattern, repl in _SPELLING:
        out = pattern.sub(repl, out)
    return out


_QUALITY = frozenset(canonical_keyword(k) for k in QUALITY_KEYWORDS)


_EXCLUDE = frozenset(canonical_keyword(k) for k in EXCLUDE_KEYWORDS)


def is_quality(kw: str) -> bool:
    """True for an image-quality keyword (never decides a label)."""
    return canonical_keyword(kw) in _QUALITY


def is_excluding(kw: str) -> bool:
    """True for a keyword that marks an image as not a usable fundus photograph."""
    return canonical_keyword(kw) in _EXCLUDE


def _table() -> dict[str, str | None]:
    groups: dict[str | None, tuple[str, ...]] = {
        None: QUALITY_KEYWORDS + EXCLUDE_KEYWORDS,
        "N": ("normal fundus",),
        "D": (
            "diabetic retinopathy",
            "mild nonproliferative retinopathy",
            "moderate nonproliferative retinopathy",
            "suspected moderate nonproliferative retinopathy",
            "severe nonproliferative retinopathy",
            "proliferative diabetic retinopathy",
            "severe proliferative diabetic retinopathy",
        ),
        "G": ("glaucoma", "suspected glaucoma"),
        "C": ("cataract",),
        "A": (
            "age-related macular degeneration",
            "dry age-related macular degeneration",
            "wet age-related macular degeneration",
        ),
        "H": ("hypertensive retinopathy",),
        "M": ("pathological myopia", "myopic maculopathy"),
        "O": (
            "abnormal pigment",
            "arteriosclerosis",
            "atrophic change",
            "atrophy",
            "branch retinal artery occlusion",
            "branch retinal vein occlusion",
            "central retinal artery occlusion",
            "central retinal vein occlusion",
            "central serous chorioretinopathy",
            "chorioretinal atrophy",
            "chorioretinal atrophy with pigmentation proliferation",
            "choroidal nevus",
            "congenital choroidal coloboma",
            "depigmentation of the retinal pigment epithelium",
            "diffuse chorioretinal atrophy",
            "drusen",
            "epiretinal membrane",
            "epiretinal membrane over the macula",
            "fundus laser photocoagulation spots",
            "glial remnants anterior to the optic disc",
            "idiopathic choroidal neovascularization",
            "intraretinal hemorrhage",
            "intraretinal microvascular abnormality",
            "laser spot",
            "macular coloboma",
            "macular epiretinal membrane",
            "macular hole",
            "maculopathy",
            "morning glory syndrome",
            "myelinated nerve fibers",
            "old branch retinal vein occlusion",
            "old central retinal vein occlusion",
            "old chorioretinopathy",
            "old choroiditis",
            "optic disc edema",
            "optic discitis",
            "optic disc epiretinal membrane",
            "optic nerve atrophy",
            "oval yellow-white atrophy",
            "peripapillary atrophy",
            "pigment epithelium proliferation",
            "post laser photocoagulation",
            "post retinal laser surgery",
            "refractive media opacity",
            "retina fold",
            "retinal pigment epithelial hypertrophy",
            "retinal pigment epithelium atrophy",
            "retinal pigmentation",
            "retinal vascular sheathing",
            "retinitis pigmentosa",
            "retinochoroidal coloboma",
            "silicone oil eye",
            "spotted membranous change",
            "suspected macular epimacular membrane",
            "suspected microvascular anomalies",
            "suspected retinal vascular sheathing",
            "tessellated fundus",
            "vessel tortuosity",
            "vitreous degeneration",
            "wedge white line change",
            "white vessel",
        ),
    }
    return {canonical_keyword(k): cat for cat, kws in groups.items() for k in kws}


#: canonical keyword -> ODIR category (``None``: quality or exclusion keyword, decides nothing).
#: Covers every keyword of ODIR-5K's full_df.csv (both eyes' columns), checked by tests/test_labels.py.
KEYWORD_TABLE: dict[str, str | None] = _table()


def keyword_category(kw: str, where: str = "") -> str | None:
    """The ODIR category (N D G C A H M O) of one keyword; ``None`` for quality/exclusion keywords.

    An unknown keyword raises :class:`DataError` naming it and ``where`` (file:row).
    """
    key = canonical_keyword(kw)
    if key in KEYWORD_TABLE:
        return KEYWORD_TABLE[key]
    at = f" in {where}" if where else ""
    raise DataError(
        f"unknown diagnostic keyword {kw!r}{at}. Add it (canonical form {key!r}) with its ODIR "
        f"category (one of {', '.join(CATEGORIES)}, or None for a quality keyword) to "
        "KEYWORD_TABLE in repro/labels.py."
    )


def eye_categories(keywords: Iterable[str], where: str = "") -> list[str]:
    """Sorted (in ``CATEGORIES`` order) decisive categories of one eye's keywords."""
    cats = {keyword_category(k, where) for k in keywords} - {None}
    return [c for c in CATEGORIES if c in cats]


TAXONOMIES: dict[str, tuple[str, ...]] = {
    "paper5": ("normal", "dr", "amd", "glaucoma", "other"),
    "odir8": ("normal", "dr", "glaucoma", "cataract", "amd", "hypertension", "myopia", "other"),
}


#: category -> class name per taxonomy
CATEGORY_NAMES: dict[str, dict[str, str]] = {
    "paper5": {"N": "normal", "D": "dr", "A": "amd", "G": "glaucoma",
               "C": "other", "H": "other", "M": "other", "O": "other"},
    "odir8": dict(zip(CATEGORIES, TAXONOMIES["odir8"])),
}


#: the order in which an eye with several categories picks its T1 class
PRIORITY = ("D", "A", "G", "C", "H", "M", "O", "N")


def check_taxonomy(taxonomy: str) -> tuple[str, ...]:
    """The class names of ``taxonomy`` (ConfigError for an unknown one)."""
    if taxonomy not in TAXONOMIES:
        raise ConfigError(f"unknown taxonomy {taxonomy!r}; choose one of {sorted(TAXONOMIES)}")
    return TAXONOMIES[taxonomy]


def coarse_label(categories: str | Iterable[str], taxonomy: str = "paper5") -> str:
    """T1 class of an eye from its ODIR categories (``"D,O"`` or ``["D", "O"]``).

    Priority (first present wins): D > A > G > C > H > M > O > N, i.e. for
    ``paper5`` **dr > amd > glaucoma > other > normal** (the paper's disease
    classes before "other", any disease before normal) and for ``odir8``
    dr > amd > glaucoma > cataract > hypertension > myopia > other > normal.
    An eye without a decisive category is a :class:`DataError`.
    """
    check_taxonomy(taxonomy)
    names = CATEGORY_NAMES[taxonomy]
    cats = set(categories.split(",") if isinstance(categories, str) else categories) - {""}
    unknown = cats - set(CATEGORIES)
    if unknown:
        raise DataError(f"unknown ODIR categor(y/ies) {sorted(unknown)}; expected a subset of {CATEGORIES}")
    for c in PRIORITY:
        if c in cats:
            return names[c]
    raise DataError("an eye without any decisive category has no T1 label (only quality keywords?)")


FINE_JOIN = " + "


def fine_label(keywords: Iterable[str]) -> str:
    """T2 class: the decisive (non-quality, non-exclusion) canonical keywords, de-duplicated,
    sorted, joined with ``" + "``.

    An eye with only quality keywords gets ``""``: it has no decisive label, and
    :func:`repro.datasets.load_odir` excludes such an image with reason
    ``"quality keywords only"`` (none of the 5,503 images of the shared subset).
    """
    keep = {canonical_keyword(k) for k in keywords if not is_quality(k) and not is_excluding(k)}
    return FINE_JOIN.join(sorted(keep))


def caption_text(text: str) -> str:
    """T3 caption: the eye's keyword text, lower-cased, separators normalised to ``", "``.

    Keywords keep their order and spelling (quality keywords included), as a reader wrote them.
    """
    return ", ".join(split_keywords(text))
