"""An --out that cannot be written is bad input: one line, exit code 2, no traceback."""
from cluster.cli import main
from fleet_helpers import EXAMPLE_CLUSTER, EXAMPLE_WORKLOAD


def test_unwritable_out_is_one_line_exit_2(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code = main(["run", "--cluster", str(EXAMPLE_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD),
                 "--out", str(blocker / "out"), "--num-requests", "5", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("fleetsim: error: ") and str(blocker) in err[0]
