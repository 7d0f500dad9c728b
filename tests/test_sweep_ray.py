"""`optcli sweep --executor ray` on a real 2-node Ray cluster on loopback (1 CPU each, the second node
with a fake custom resource): cells land on both nodes, a resource-pinned cell lands on its node, and
a worker killed in the middle of a cell is an infrastructure failure that is retried."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from test_sweep import cells_of, finish, start, sweep_folder, wait_for

cluster_utils = pytest.importorskip("ray.cluster_utils")


@pytest.fixture(scope="module")
def cluster():
    import ray

    made = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    fake = made.add_node(num_cpus=1, resources={"fake_accel": 1})
    made.wait_for_nodes()
    made.fake_node_id = fake.node_id
    made.node_ids = {node.node_id for node in made.list_all_nodes()}
    yield made
    ray.shutdown()
    made.shutdown()


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_cells_spread_over_both_nodes_pinned_cell_and_a_killed_worker_is_retried(model_dir, cluster):
    pinned = {"pinned": {"custom": {"fake_accel": 1}}}
    sweep_folder(model_dir, ["a", "b", "pinned"], extra="concurrency: 2\nretries: 1\n", resources=pinned)
    (model_dir / "hold-a").touch()
    proc = start(model_dir, "--ray-address", cluster.address)
    wait_for(model_dir / "calls-a", proc)
    cell_pid = int((model_dir / "calls-a").read_text().split()[0])
    worker = parent_of(cell_pid)  # the Ray worker process running the cell's task
    os.kill(worker, signal.SIGKILL)
    (model_dir / "hold-a").unlink()
    code, out = finish(proc)
    assert code == 0, out
    cells = cells_of(model_dir)
    first, second = cells["recipe/a"]["attempts"]
    assert "WorkerCrashedError" in first["infra_error"] and first["worker_pid"] is None
    assert second["exit_code"] == 0 and cells["recipe/a"]["status"] == "finished"
    # The retry ran in another worker process. (Whether it read the data again depends on whether the
    # killed attempt's validation reached the stage cache first, so the data's call count is not checked.)
    assert second["worker_pid"] not in (None, worker)
    # Each cell reports the node it ran on; the pinned one ran where the resource is.
    assert cells["recipe/pinned"]["attempts"][0]["node"] == cluster.fake_node_id
    nodes = {a["node"] for c in cells.values() for a in c["attempts"] if a["node"]}
    assert nodes == cluster.node_ids
    # The workers' run folders were not shared: their report files came back to the driver.
    for name in ("a", "b", "pinned"):
        report = json.loads((model_dir / "out" / "recipe" / name / "report.json").read_text())
        assert report["verdict"] == "pass" and (model_dir / "out" / "recipe" / name / "cell.log").exists()
    assert not (model_dir / "out" / "recipe" / "a" / "exported.onnx").exists()
