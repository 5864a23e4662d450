"""The command line: ``python -m repro data --summary --json`` on the real data, clear one-line errors, help for
every option with the defaults it really has, one ``--results-root``, ``check-report``, and the Makefile's calls."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

from repro.cli import build_parser, main
from repro.errors import ConfigError
from repro.paths import DEFAULT_RESULTS_ROOT, PROJECT_ROOT, project_relative


def test_data_summary_json(odir_root):
    out = subprocess.run([sys.executable, "-m", "repro", "data", "--summary", "--json", "--no-images",
                          "--data-root", str(odir_root)], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["images_kept"] == 5503 and s["images_excluded"] == 0 and s["patients"] == 2878
    assert s["split_file"].endswith("odir5k-n5503_seed0.csv")
    assert {k: v["patients"] for k, v in s["splits"].items()} == {"train": 2014, "val": 432, "test": 432}
    assert sum(s["coarse_counts"]["train"].values()) == s["splits"]["train"]["images"]
    assert set(s["coarse_counts"]["train"]) == {"normal", "dr", "amd", "glaucoma", "other"}


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "--data-root", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0] and "Kaggle" in err[0]
    assert main(["train", "--profile", "smoke", "--p", "20"]) == 2
    assert "p=20" in capsys.readouterr().err
    assert main(["train", "--profile", "nope"]) == 2
    assert "unknown profile" in capsys.readouterr().err


# --- one command line: every option explained, defaults told truthfully, one name for the results root -------

def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def test_every_option_of_every_command_has_help():
    missing = [f"{name} {a.option_strings[0] if a.option_strings else a.dest}"
               for name, parser in _commands().items() for a in _options(parser) if not (a.help or "").strip()]
    assert missing == []
    assert {"data", "sweep", "run-notebook", "train", "evaluate", "bench", "report", "compare",
            "check-report"} <= set(_commands())


def test_stated_defaults_are_the_defaults():
    """A help text that states a default states the one argparse uses (lists as space- or comma-separated)."""
    wrong = []
    for name, parser in _commands().items():
        for a in _options(parser):
            said = re.search(r"default: ([^)]*)\)", a.help or "")
            if not said or a.default is None or isinstance(a.default, bool):
                continue
            values = a.default if isinstance(a.default, (list, tuple)) else [a.default]
            texts = {" ".join(map(str, values)), ", ".join(map(str, values))}
            if not any(said.group(1).startswith(t) for t in texts):
                wrong.append(f"{name} {a.option_strings[0]}: help says {said.group(1)!r}, default is {a.default!r}")
    assert wrong == []


def test_results_root_is_one_option_with_one_truthful_default():
    for name, parser in _commands().items():
        opts = {s: a for a in _options(parser) for s in a.option_strings}
        assert "--results-root" in opts, name
        text = opts["--results-root"].help
        assert f"$REPRO_RESULTS, else {project_relative(DEFAULT_RESULTS_ROOT)}/" in text, (name, text)
    report = _commands()["report"].format_help()
    assert "(default: results)" not in report and "else out/" in " ".join(report.split())
    assert [n for n, p in _commands().items() if any("--results-dir" in a.option_strings for a in _options(p))] \
        == ["train"]


def test_train_results_dir_is_a_deprecated_alias(tmp_path, monkeypatch, capsys):
    import repro.experiments.context as context

    seen = []

    def fake_make_context(profile, **kw):
        seen.append(kw["results_dir"])
        raise ConfigError("stop here")

    monkeypatch.setattr(context, "make_context", fake_make_context)
    assert main(["train", "--profile", "smoke", "--results-root", str(tmp_path)]) == 2
    assert seen[-1] == str(tmp_path / "smoke") and "deprecated" not in capsys.readouterr().err
    assert main(["train", "--profile", "smoke", "--results-dir", str(tmp_path / "old" / "smoke")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert seen[-1] == str(tmp_path / "old" / "smoke")
    assert err[0] == f"warning: --results-dir is deprecated; use --results-root {tmp_path / 'old'} " \
                     "(the folder holding smoke/)"
    assert main(["train", "--profile", "smoke"]) == 2 and seen[-1] is None  # $REPRO_RESULTS or out/
    capsys.readouterr()
    assert main(["train", "--results-dir", str(tmp_path), "--results-root", str(tmp_path)]) == 2
    assert "not both" in capsys.readouterr().err


def test_check_report_subcommand(tmp_path, monkeypatch, capsys):
    import repro.report.check as check

    got = []
    monkeypatch.setattr(check, "main", lambda argv=None: got.append(argv) or 0)
    assert main(["check-report", "a.html", "b.html", "--no-browser", "--min-images", "3"]) == 0
    assert main(["check-report", "--profile", "smoke", "--results-root", str(tmp_path), "--screenshot", "s.png"]) == 0
    assert got == [["a.html", "b.html", "--no-browser", "--min-images", "3"],
                   [str(tmp_path / "smoke" / "report" / "report.html"), "--screenshot", "s.png"]]
    monkeypatch.undo()
    missing = tmp_path / "quick" / "report" / "report.html"
    assert main(["check-report", "--no-browser", "--results-root", str(tmp_path)]) == 2
    assert str(missing) in capsys.readouterr().err
    # the module name forwards to the one entry point, `python -m repro check-report`
    out = subprocess.run([sys.executable, "-m", "repro.report.check", "--no-browser", str(missing)],
                         capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60)
    assert out.returncode == 2 and str(missing) in out.stderr


def test_makefile_uses_options_the_commands_know():
    """Every ``python -m repro <command> --option`` in the Makefile names an option of that command."""
    commands = _commands()
    text = (PROJECT_ROOT / "Makefile").read_text().replace("\\\n", " ")
    calls = re.findall(r"-m repro (\S+)([^\n]*)", text)
    assert {c for c, _ in calls} >= {"data", "sweep", "compare", "report", "check-report", "bench"}
    unknown = [(c, o) for c, rest in calls for o in re.findall(r"(?<!\S)(--[a-z-]+)", rest)
               if o not in {s for a in _options(commands[c]) for s in a.option_strings}]
    assert unknown == []
