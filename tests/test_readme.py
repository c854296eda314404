"""The README's demo numbers are params.yaml's and the committed snapshot's (docs/demo/, refreshed by
make demo): a changed value or a new run that the README does not follow fails here."""

import re

from divdistill.experiment import config as dd

from .conftest import ROOT

README = (ROOT / "README.md").read_text()
PARAMS = dd.load(ROOT / "params.yaml")
SNAPSHOT = ROOT / "docs" / "demo" / "tables"


def _numbers(text: str) -> list[str]:
    return re.findall(r"\d+\.\d ± \d+\.\d", text)


def test_demo_settings_quoted_in_the_readme_are_params_yaml():
    assert set(re.findall(r"(\d+) evaluation seeds", README)) == {str(len(PARAMS["seeds"]))}
    iterations = str(PARAMS["synthesis"]["dm"]["iterations"])
    assert re.findall(r"DM for (\d+) iterations", README) == [iterations]
    assert re.findall(r"runs (\d+) iterations \(the paper", README) == [iterations]
    net = PARAMS["evaluate"]["nets"]["convnet"]
    assert set(re.findall(r"ConvNet-(\d+) (?:\(width|of width) (\d+)", README)) == {(str(net["depth"]), str(net["width"]))}
    assert re.findall(r"the upper bound: the first (\d+)\)", README) == [str(PARAMS["evaluate"]["seeds_full"])]
    assert re.findall(r"IPC (\d+) only", README) == [str(PARAMS["ipc"][0])] and len(PARAMS["ipc"]) == 1


def test_the_readme_results_table_is_the_snapshot():
    rows = re.findall(r"^\| ([123]) \| (fashion-\w+) \|(.*)$", README, re.M)
    assert len(rows) == 2
    for table, dataset, rest in rows:
        snap = (SNAPSHOT / f"table{table}.md").read_text()
        row = next(line for line in snap.splitlines() if line.startswith(f"| hard | {dataset} | 10 | ConvNet"))
        ours, theirs = _numbers(rest), _numbers(row)
        assert ours and all(x in theirs for x in ours), (dataset, ours, theirs)
        assert [theirs.index(x) for x in ours] == sorted(theirs.index(x) for x in ours)  # same column order


def test_the_readme_comparisons_are_the_snapshot():
    snap = (SNAPSHOT / "comparisons.md").read_text().replace("−", "-")
    rows = re.findall(r"^\| (fashion-\w+) \| ([^|]+ − [^|]+) \| ([^|]+) \| \[([^]]+)\] \| ([^|]+) \| ([^|]+) \|$",
                      README, re.M)
    assert len(rows) >= 6
    for dataset, comparison, delta, ci, p, mdd in rows:
        comparison, delta, ci = comparison.strip().replace("−", "-"), delta.strip().replace("−", "-"), ci.replace("−", "-")
        line = next(line for line in snap.splitlines()
                    if line.startswith("| table") and f"| {dataset} | 10 | ConvNet | hard | {comparison} |" in line)
        cells = [c.strip() for c in line.split("|")[1:-1]]
        assert (cells[7], cells[8], cells[10], cells[11]) == (delta, f"[{ci}]", p.strip(), mdd.strip()), line


def test_the_snapshot_script_copies_what_a_reader_can_use_and_replaces_the_snapshot_whole(tmp_path):
    """make demo's last step (workflow/scripts/snapshot.sh): tables, metrics, CSVs and figures are copied;
    the HTML (links into the run's own mlflow.db) and the study's folder are not; a file the new run did
    not make (a screenshot without chromium) does not survive from the old snapshot."""
    import subprocess

    reports, snap = tmp_path / "reports", tmp_path / "docs" / "demo"
    for name in ("metrics.json", "tables/table1.md", "tables/table1.tex", "tables/table1.html", "report.html",
                 "figures/figure1.png", "figures/figure1.pdf", "plots/curves/a.csv", "study/study.md"):
        (reports / name).parent.mkdir(parents=True, exist_ok=True)
        (reports / name).write_text(name)
    (snap / "old").mkdir(parents=True)
    (snap / "report.png").write_text("a screenshot of an older run")
    script = ROOT / "workflow" / "scripts" / "snapshot.sh"
    # relative paths from the project folder, as make demo calls it
    p = subprocess.run(["bash", str(script), "reports", "docs/demo"], cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    kept = sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file())
    assert kept == ["figures/figure1.pdf", "figures/figure1.png", "metrics.json", "plots/curves/a.csv",
                    "tables/table1.md", "tables/table1.tex"]
    assert (snap / "tables" / "table1.md").read_text() == "tables/table1.md"
    empty = tmp_path / "empty"
    empty.mkdir()
    p = subprocess.run(["bash", str(script), "empty", "docs/demo"], cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode != 0 and "metrics.json missing" in p.stderr and (snap / "metrics.json").exists()
