"""Per-eye labels from ODIR-5K diagnostic keywords (docs/design.md §2).

An eye's keyword text (``"laser spot，moderate non proliferative retinopathy"``)
gives three targets, as in the paper's three tasks:

- T1 ``coarse_label``: one class of a taxonomy (``paper5``: normal, dr, amd,
  glaucoma, other; ``odir8``: the eight ODIR categories), chosen from the eye's
  categories by a fixed priority order;
- T2 ``fine_label``: the eye's decisive keywords, canonicalised, sorted, joined;
- T3 ``caption_text``: the keyword text itself, lower-cased, separators normalised.

Keywords map to the ODIR categories N D G C A H M O through an explicit table
(``KEYWORD_TABLE``), the complete published ODIR-5K vocabulary. A keyword the
table lacks falls to the documented rules of :data:`RULES`, tried in order
(:func:`decide_keyword`); every such keyword is counted by
:func:`keyword_report`, and ``strict_keywords`` makes them an error
(:func:`check_strict_keywords`).
"""

from __future__ import annotations

import re
from collections import Counter
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
    """True for an image-quality keyword (never decides a label): one of ``QUALITY_KEYWORDS``, or a
    keyword the table lacks that the "quality" rule of :data:`RULES` matches."""
    key = canonical_keyword(kw)
    return key in _QUALITY or (key not in KEYWORD_TABLE and decide_keyword(key)[1] == "quality")


def is_excluding(kw: str) -> bool:
    """True for a keyword that marks an image as not a usable fundus photograph."""
    return canonical_keyword(kw) in _EXCLUDE


def _table() -> dict[str, str | None]:
    """The keyword table, grouped by category.

    Source: the keyword vocabulary of the organisers' annotation file
    ``ODIR-5K_Training_Annotations(Updated)_V2.xlsx`` (the Kaggle ``full_df.csv``
    copies its keyword columns), with the N..O letter of each keyword as in the
    public per-keyword maps of ODIR projects, e.g. the rule engine of
    github.com/JordiCorbilla/ocular-disease-intelligent-recognition-deep-learning
    (``odir_rule_engine.py``: the four non-decisive and the two exclusion
    keywords, and the substring rules reused by :data:`RULES`). The keywords of
    the shared 90 % subset are checked by tests/test_labels.py, where the
    table reproduces the patient-level flags of 2,878 / 2,878 patients.
    """
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
            "suspected diabetic retinopathy",
            "suspicious diabetic retinopathy",
        ),
        "G": ("glaucoma", "suspected glaucoma"),
        "C": ("cataract", "suspected cataract"),
        "A": (
            "age-related macular degeneration",
            "dry age-related macular degeneration",
            "wet age-related macular degeneration",
        ),
        "H": ("hypertensive retinopathy",),
        "M": ("pathological myopia", "myopic maculopathy", "myopia retinopathy", "myopic retinopathy"),
        "O": (
            "abnormal color of optic disc",
            "abnormal pigment",
            "arteriosclerosis",
            "asteroid hyalosis",
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
            "diffuse retinal atrophy",
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
            "macular epimacular membrane",
            "macular epiretinal membrane",
            "macular hole",
            "macular pigmentation disorder",
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
            "pigmentation disorder",
            "post laser photocoagulation",
            "post retinal laser surgery",
            "punctate inner choroidopathy",
            "refractive media opacity",
            "retina fold",
            "retinal artery macroaneurysm",
            "retinal detachment",
            "retinal pigment epithelial hypertrophy",
            "retinal pigment epithelium atrophy",
            "retinal pigmentation",
            "retinal vascular sheathing",
            "retinitis pigmentosa",
            "retinochoroidal coloboma",
            "rhegmatogenous retinal detachment",
            "silicone oil eye",
            "spotted membranous change",
            "suspected abnormal color of optic disc",
            "suspected macular epimacular membrane",
            "suspected microvascular anomalies",
            "suspected retinal vascular sheathing",
            "suspected retinitis pigmentosa",
            "tessellated fundus",
            "vascular loops",
            "vessel tortuosity",
            "vitreous degeneration",
            "vitreous opacity",
            "wedge white line change",
            "wedge-shaped change",
            "white vessel",
        ),
    }
    return {canonical_keyword(k): cat for cat, kws in groups.items() for k in kws}


#: canonical keyword -> ODIR category (``None``: quality or exclusion keyword, decides nothing).
#: The complete published ODIR-5K vocabulary (see :func:`_table`); tests/test_labels.py checks that it
#: covers every keyword of the shared data's full_df.csv (both eyes' columns).
KEYWORD_TABLE: dict[str, str | None] = _table()


TABLE = "table"


#: rule id -> what it does, in the order :func:`decide_keyword` tries them for a keyword the table lacks
RULES: dict[str, str] = {
    "quality": "a quality phrase -> no label",
    "suspected": "suspected/suspicious X -> the category of X",
    "diabetic": "names diabetic or (non)proliferative retinopathy -> D",
    "glaucoma": "names glaucoma -> G",
    "cataract": "names cataract -> C",
    "macular degeneration": "names macular degeneration -> A",
    "hypertensive": "names hypertensive or hypertension -> H",
    "myopia": "names myopi... -> M",
    "other": "anything else -> O",
}


_QUALITY_RULE = re.compile(
    r"lens dust|image quality|image offset|photographically invisible|\b(?:poor|low|bad) quality\b"
    r"|\b(?:blurr?(?:ed|y)|over-?exposed|under-?exposed|out of focus|artefacts?|artifacts?)\b"
)


_SUSPECTED_RULE = re.compile(r"^(?:suspected|suspicious)(?: of)? (.+)$")


_CATEGORY_RULES = (  # (rule id, pattern, category), in RULES order
    ("diabetic", re.compile(r"diabet|\b(?:non)?proliferative retinopathy\b"), "D"),
    ("glaucoma", re.compile(r"glaucoma"), "G"),
    ("cataract", re.compile(r"cataract"), "C"),
    ("macular degeneration", re.compile(r"macular degeneration"), "A"),
    ("hypertensive", re.compile(r"hypertensi"), "H"),
    ("myopia", re.compile(r"myopi"), "M"),
)


def decide_keyword(kw: str) -> tuple[str | None, str]:
    """``(category, decided_by)`` of one keyword: ``decided_by`` is ``"table"`` or a :data:`RULES` id.

    The category is N..O, or ``None`` for a quality or exclusion keyword. A keyword
    the table lacks takes the first rule of :data:`RULES` that matches its canonical
    form; "suspected/suspicious X" takes the category of X (table, then rules).
    """
    key = canonical_keyword(kw)
    if key in KEYWORD_TABLE:
        return KEYWORD_TABLE[key], TABLE
    if _QUALITY_RULE.search(key):
        return None, "quality"
    m = _SUSPECTED_RULE.match(key)
    if m:
        return decide_keyword(m.group(1))[0], "suspected"
    for rule, pattern, cat in _CATEGORY_RULES:
        if pattern.search(key):
            return cat, rule
    return "O", "other"


def keyword_category(kw: str, where: str = "") -> str | None:
    """The ODIR category (N D G C A H M O) of one keyword; ``None`` for quality/exclusion keywords.

    Table first, then :data:`RULES` (:func:`decide_keyword`), so it never fails; ``where`` (file:row)
    is accepted for the callers that pass it.
    """
    return decide_keyword(kw)[0]


def keyword_report(texts: Iterable[str], lines: Iterable[int] | None = None) -> dict:
    """How the keywords of ``texts`` (one keyword text per image) were decided.

    Counts distinct keywords and occurrences decided by the table and by the rules
    (``unknown`` is always 0: every keyword gets a category). ``by_rule`` lists each
    rule-decided keyword: ``keyword`` (canonical), ``count`` (occurrences),
    ``category`` (``None``: no label), ``rule`` (a :data:`RULES` id), ``means`` and,
    given the texts' CSV ``lines``, ``first_line``; most frequent first.
    """
    texts = list(texts)
    lines = list(lines) if lines is not None else [None] * len(texts)
    table, ruled, first = Counter(), Counter(), {}
    for text, line in zip(texts, lines):
        for k in split_keywords(text):
            key = canonical_keyword(k)
            (table if key in KEYWORD_TABLE else ruled)[key] += 1
            first.setdefault(key, line)
    by_rule = []
    for key, n in sorted(ruled.items(), key=lambda kv: (-kv[1], kv[0])):
        cat, rule = decide_keyword(key)
        row = {"keyword": key, "count": int(n), "category": cat, "rule": rule, "means": RULES[rule]}
        by_rule.append(row if first[key] is None else {**row, "first_line": int(first[key])})
    return {"distinct_by_table": len(table), "occurrences_by_table": int(sum(table.values())),
            "distinct_by_rule": len(ruled), "occurrences_by_rule": int(sum(ruled.values())),
            "unknown": 0, "by_rule": by_rule}


def describe_rule_decided(report: dict, limit: int | None = None) -> str:
    """``'retinal detachment' (3 image(s), first at line 7, rule "anything else -> O")``, ... for the
    rule-decided keywords (the first ``limit`` of them, then how many more)."""
    rows = report.get("by_rule", [])
    shown = rows if limit is None else rows[:limit]
    text = ", ".join(f"{r['keyword']!r} ({r['count']} image(s)"
                     + (f", first at line {r['first_line']}" if "first_line" in r else "")
                     + f", rule \"{r['means']}\")" for r in shown)
    return text + (f" and {len(rows) - len(shown)} more" if len(rows) > len(shown) else "")


def check_strict_keywords(report: dict, where: str) -> None:
    """With ``strict_keywords``: a :class:`DataError` listing every keyword of ``report`` decided by a rule."""
    if report.get("by_rule"):
        raise DataError(
            f"{len(report['by_rule'])} diagnostic keyword(s) in {where} are not in the keyword table and "
            f"strict_keywords / --strict-keywords is set: {describe_rule_decided(report)}. Remove "
            "--strict-keywords to let the rules decide, or add the keyword(s) with their ODIR category to "
            "KEYWORD_TABLE in repro/data/labels.py."
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
