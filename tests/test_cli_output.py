"""An --out that cannot be written is bad input: one line, exit code 2, no traceback."""
from fleetsim.cluster.cli import main
from fleetsim.cluster.policies import Policy
from fleet_helpers import EXAMPLE_CLUSTER, EXAMPLE_WORKLOAD


def test_unwritable_out_is_one_line_exit_2(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code = main(["run", "--cluster", str(EXAMPLE_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD),
                 "--out", str(blocker / "out"), "--num-requests", "5", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("fleetsim: error: ") and str(blocker) in err[0]


class OutOfRange(Policy):
    """A user policy with a bug: it names an instance that does not exist."""
    name = "out_of_range"

    def choose(self, request, snapshots, rng):
        return self.n


def test_user_policy_returning_a_bad_instance_is_one_line_exit_2(tmp_path, capsys):
    code = main(["run", "--cluster", str(EXAMPLE_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD), "--out",
                 str(tmp_path / "o"), "--num-requests", "5", "--instances", "2", "--router",
                 "test_cli_output:OutOfRange", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "choose() returned instance 2; allowed 0..1" in err[0]
    assert not (tmp_path / "o" / "requests.csv").exists()
